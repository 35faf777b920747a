/* SPDX-License-Identifier: MIT */
/*
 * histogram.h: a log-linear latency histogram (as HdrHistogram): 32
 * linear steps per power of two, so any percentile is within about 3% of
 * the true value, in a fixed 15 KiB whatever the range or the count.
 */
#ifndef HISTOGRAM_H
#define HISTOGRAM_H

#include <stdint.h>

#define HIST_SUB_BITS 5
#define HIST_BUCKETS ((64 - HIST_SUB_BITS + 1) << HIST_SUB_BITS)

struct histogram {
	uint64_t count;
	uint64_t min, max; /* exact */
	uint64_t buckets[HIST_BUCKETS];
};

void hist_init(struct histogram *h);
void hist_add(struct histogram *h, uint64_t value);
/* The value at or below which p percent (0-100) of the values fall. */
uint64_t hist_percentile(const struct histogram *h, double p);
/* Add every value of src into dst. */
void hist_merge(struct histogram *dst, const struct histogram *src);

#endif /* HISTOGRAM_H */
