/* SPDX-License-Identifier: MIT */
/* bench_report.c: what `pbx bench` prints: a table, JSON, a live line. */
#include "bench.h"

#include <stdio.h>
#include <unistd.h>

static double
per_second(uint64_t n, double seconds)
{
	return seconds > 0 ? (double)n / seconds : 0.0;
}

static uint64_t
errors_total(const struct bench_stats *s)
{
	uint64_t n = 0;

	for (int i = 0; i < BENCH_ERR_COUNT; i++)
		n += s->errors[i];
	return n;
}

/* Microseconds as "850 us", "1.25 ms" or "2.10 s". */
static const char *
fmt_us(char *buf, size_t size, uint64_t us)
{
	if (us < 1000)
		snprintf(buf, size, "%llu us", (unsigned long long)us);
	else if (us < 1000000)
		snprintf(buf, size, "%.2f ms", (double)us / 1e3);
	else
		snprintf(buf, size, "%.2f s", (double)us / 1e6);
	return buf;
}

static const char *
fmt_bytes(char *buf, size_t size, double bytes)
{
	static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	int u = 0;

	while (bytes >= 1024 && u < 4) {
		bytes /= 1024;
		u++;
	}
	snprintf(buf, size, u == 0 ? "%.0f %s" : "%.1f %s", bytes, unit[u]);
	return buf;
}

static void
report_json(const struct bench_opts *o, const struct bench_stats *s)
{
	const struct histogram *h = &s->latency;

	printf(
	    "{\"address\": \"%s\", \"seconds\": %.3f, \"concurrency\": %u, \"connections\": %llu, \"connections_per_s\": %.1f, \"rounds\": %llu, \"rounds_per_s\": %.1f, \"bytes_in\": %llu, \"bytes_out\": %llu, \"bytes_in_per_s\": %.1f, \"bytes_out_per_s\": %.1f, ",
	    o->address, s->seconds, o->conns, (unsigned long long)s->calls,
	    per_second(s->calls, s->seconds), (unsigned long long)s->rounds,
	    per_second(s->rounds, s->seconds), (unsigned long long)s->bytes_in,
	    (unsigned long long)s->bytes_out,
	    per_second(s->bytes_in, s->seconds),
	    per_second(s->bytes_out, s->seconds));
	printf(
	    "\"latency_us\": {\"min\": %llu, \"p50\": %llu, \"p90\": %llu, \"p99\": %llu, \"p99_9\": %llu, \"max\": %llu}, ",
	    (unsigned long long)(h->count ? h->min : 0),
	    (unsigned long long)hist_percentile(h, 50),
	    (unsigned long long)hist_percentile(h, 90),
	    (unsigned long long)hist_percentile(h, 99),
	    (unsigned long long)hist_percentile(h, 99.9),
	    (unsigned long long)h->max);
	printf("\"errors\": {");
	for (int i = 0; i < BENCH_ERR_COUNT; i++)
		printf("%s\"%s\": %llu", i ? ", " : "", bench_error_names[i],
		    (unsigned long long)s->errors[i]);
	printf("}, \"errors_total\": %llu, \"cut_off\": %llu",
	    (unsigned long long)errors_total(s),
	    (unsigned long long)s->cut_off);

	if (o->hold)
		printf(", \"held\": %llu, \"dropped\": %llu",
		    (unsigned long long)s->held,
		    (unsigned long long)s->dropped);
	if (o->rounds == 0)
		printf(", \"open\": %llu", (unsigned long long)s->cut_off);
	printf("}\n");
}

static void
report_errors(const struct bench_stats *s)
{
	printf("  errors        %llu", (unsigned long long)errors_total(s));
	const char *sep = " (";
	for (int i = 0; i < BENCH_ERR_COUNT; i++) {
		if (s->errors[i] == 0)
			continue;
		printf("%s%s %llu", sep, bench_error_names[i],
		    (unsigned long long)s->errors[i]);
		sep = ", ";
	}
	printf("%s\n", sep[0] == ',' ? ")" : "");
}

/*
 * Calls and round trips. With --rounds 0 a connection carries rounds
 * until the time is up and never completes: what counts is the round
 * trips, and how many connections stood open at the end.
 */
static void
report_calls(const struct bench_opts *o, const struct bench_stats *s)
{
	if (o->rounds == 0) {
		printf("  round trips   %llu   %.1f/s\n",
		    (unsigned long long)s->rounds,
		    per_second(s->rounds, s->seconds));
		printf("  connections   %llu open at the end\n",
		    (unsigned long long)s->cut_off);
		return;
	}
	printf("  connections   %llu   %.1f/s\n", (unsigned long long)s->calls,
	    per_second(s->calls, s->seconds));
	if (s->rounds != s->calls)
		printf("  round trips   %llu   %.1f/s\n",
		    (unsigned long long)s->rounds,
		    per_second(s->rounds, s->seconds));
}

static void
report_text(const struct bench_opts *o, const struct bench_stats *s)
{
	const struct histogram *h = &s->latency;
	char a[32], b[32], c[32], d[32], e[32];

	printf("pbx bench %s: %.2f s, %u in flight\n", o->address, s->seconds,
	    o->conns);
	report_calls(o, s);
	printf("  bytes in      %s   %s/s\n",
	    fmt_bytes(a, sizeof a, (double)s->bytes_in),
	    fmt_bytes(b, sizeof b, per_second(s->bytes_in, s->seconds)));
	printf("  bytes out     %s   %s/s\n",
	    fmt_bytes(a, sizeof a, (double)s->bytes_out),
	    fmt_bytes(b, sizeof b, per_second(s->bytes_out, s->seconds)));
	printf("  latency       p50 %s  p90 %s  p99 %s  p99.9 %s  max %s\n",
	    fmt_us(a, sizeof a, hist_percentile(h, 50)),
	    fmt_us(b, sizeof b, hist_percentile(h, 90)),
	    fmt_us(c, sizeof c, hist_percentile(h, 99)),
	    fmt_us(d, sizeof d, hist_percentile(h, 99.9)),
	    fmt_us(e, sizeof e, h->max));
	if (o->hold)
		printf("  held          %llu of %u (dropped %llu)\n",
		    (unsigned long long)s->held, o->conns,
		    (unsigned long long)s->dropped);
	report_errors(s);
}

void
bench_report(const struct bench_opts *o, const struct bench_stats *s)
{
	if (o->json)
		report_json(o, s);
	else
		report_text(o, s);
	fflush(stdout);
}

void
bench_progress(const struct bench_stats *s, double elapsed_s, bool last)
{
	char line[160], p99[32];
	int n = snprintf(line, sizeof line,
	    "\r%6.1f s  %10.1f conn/s  p99 %-10s  errors %llu   ", elapsed_s,
	    per_second(s->calls, elapsed_s),
	    fmt_us(p99, sizeof p99, hist_percentile(&s->latency, 99)),
	    (unsigned long long)errors_total(s));
	if (n < 0)
		return;
	if (last && (size_t)n + 1 < sizeof line)
		line[n++] = '\n';
	ssize_t w = write(STDERR_FILENO, line, (size_t)n);
	(void)w; /* progress is best effort */
}
