/* SPDX-License-Identifier: MIT */
/*
 * bench.h: `pbx bench`, a load generator on the event loop: many calls in
 * flight, each connect (from the next source address), send, read until
 * EOF or a byte count, close; latencies into a histogram, failures sorted
 * by kind.
 */
#ifndef BENCH_H
#define BENCH_H

#include "histogram.h"
#include "pbx.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BENCH_MAX_SOURCES 64

/* Why a call failed; the names are what the report prints. */
enum bench_error {
	BENCH_ERR_REFUSED,     /* ECONNREFUSED */
	BENCH_ERR_RESET,       /* ECONNRESET, EPIPE */
	BENCH_ERR_TIMEOUT,     /* no answer within --timeout */
	BENCH_ERR_UNREACHABLE, /* ENETUNREACH, EHOSTUNREACH */
	BENCH_ERR_ADDRESS,     /* EADDRNOTAVAIL, EADDRINUSE: out of ports */
	BENCH_ERR_DESCRIPTORS, /* EMFILE, ENFILE: out of fds here */
	BENCH_ERR_MISMATCH,    /* the reply does not start with --expect */
	BENCH_ERR_SHORT,       /* EOF before --expect-bytes */
	BENCH_ERR_OTHER,
	BENCH_ERR_COUNT,
};
extern const char *const bench_error_names[BENCH_ERR_COUNT];

struct bench_opts {
	const char *address; /* as typed */
	struct pbx_addr target;
	unsigned conns;       /* in flight (-c) */
	uint64_t duration_ms; /* -d; 0 with -n */
	uint64_t total;       /* -n: calls to make; 0: until -d ends */
	uint64_t warmup_ms;
	char *send; /* owned: bytes to send once connected (may be NULL) */
	size_t send_len;
	bool expect_bytes_set;
	uint64_t expect_bytes; /* a round ends after this many bytes */
	const char *expect;    /* a reply must start with this */
	size_t expect_len;
	struct pbx_addr sources[BENCH_MAX_SOURCES];
	size_t nsources;
	unsigned rounds; /* send/reply rounds per connection; 0: no end */
	bool reset;      /* close with RST */
	bool hold;       /* open -c connections and keep them for -d */
	bool json;
	bool progress;  /* a live line on stderr */
	int timeout_ms; /* per call: connect and reply */
};

struct bench_stats {
	uint64_t calls;  /* connections completed */
	uint64_t rounds; /* replies completed (== calls with one round) */
	uint64_t bytes_in, bytes_out;
	uint64_t errors[BENCH_ERR_COUNT];
	uint64_t held, dropped; /* --hold: standing at the end, lost */
	uint64_t cut_off;       /* calls in flight when the time was up */
	int fatal; /* an error that stopped the run (-EACCES, ...), or 0 */

	double seconds;           /* measured time */
	struct histogram latency; /* microseconds, per round */
};

/* Run the load; fills stats. Returns 0 or -errno (setup failed). */
int bench_run(const struct bench_opts *o, struct bench_stats *stats);

/* Print the report (text or JSON) to stdout. */
void bench_report(const struct bench_opts *o, const struct bench_stats *s);

/* One-line live progress on stderr, overwritten in place. */
void bench_progress(const struct bench_stats *s, double elapsed_s, bool last);

#endif /* BENCH_H */
