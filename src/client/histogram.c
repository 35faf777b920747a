/* SPDX-License-Identifier: MIT */
/* histogram.c: log-linear buckets for latencies. */
#include "histogram.h"

#include <string.h>

void
hist_init(struct histogram *h)
{
	memset(h, 0, sizeof *h);
	h->min = UINT64_MAX;
}

/*
 * Values below 2^SUB have a bucket each; above, each power of two is cut
 * into 2^SUB equal steps.
 */
static unsigned
bucket_of(uint64_t v)
{
	if (v < (1u << HIST_SUB_BITS))
		return (unsigned)v;
	unsigned e = 63u - (unsigned)__builtin_clzll(v);
	unsigned shift = e - HIST_SUB_BITS;
	return ((shift + 1) << HIST_SUB_BITS) +
	       (unsigned)((v >> shift) - (1u << HIST_SUB_BITS));
}

/* The highest value that falls into bucket b. */
static uint64_t
bucket_top(unsigned b)
{
	if (b < (1u << HIST_SUB_BITS))
		return b;
	unsigned shift = (b >> HIST_SUB_BITS) - 1;
	uint64_t m = (b & ((1u << HIST_SUB_BITS) - 1)) + (1u << HIST_SUB_BITS);
	return ((m + 1) << shift) - 1;
}

void
hist_add(struct histogram *h, uint64_t v)
{
	h->buckets[bucket_of(v)]++;
	h->count++;
	if (v < h->min)
		h->min = v;
	if (v > h->max)
		h->max = v;
}

uint64_t
hist_percentile(const struct histogram *h, double p)
{
	if (h->count == 0)
		return 0;
	uint64_t rank = (uint64_t)((p / 100.0) * (double)h->count + 0.5);
	if (rank == 0)
		rank = 1;
	uint64_t seen = 0;
	for (unsigned b = 0; b < HIST_BUCKETS; b++) {
		seen += h->buckets[b];
		if (seen >= rank) {
			uint64_t top = bucket_top(b);
			return top < h->max ? top : h->max;
		}
	}
	return h->max;
}

void
hist_merge(struct histogram *dst, const struct histogram *src)
{
	for (unsigned b = 0; b < HIST_BUCKETS; b++)
		dst->buckets[b] += src->buckets[b];
	dst->count += src->count;
	if (src->min < dst->min)
		dst->min = src->min;
	if (src->max > dst->max)
		dst->max = src->max;
}
