/* SPDX-License-Identifier: MIT */
/* bench_cli.c: `pbx bench`: options in, a load run and its report out. */
#include "../client/bench.h"
#include "../log/log.h"
#include "args.h"
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

static const char bench_usage[] =
    "usage: pbx bench [OPTIONS] ADDRESS\n"
    "\n"
    "Place calls to ADDRESS as fast as they are answered, -c at a time: each\n"
    "call connects, sends --send (if any), reads the reply until EOF (or\n"
    "--expect-bytes) and closes. Reports calls/s, bytes/s, latency\n"
    "percentiles and errors by kind. Aim it only at machines you run.\n"
    "\n"
    "Options:\n"
    "  -c, --connections N     calls in flight (default 50)\n"
    "  -d, --duration SECONDS  how long to measure (default 10)\n"
    "  -n, --total N           stop after N calls instead\n"
    "      --warmup SECONDS    run this long before measuring (default 0)\n"
    "      --send TEXT|@FILE   send this once connected; TEXT takes \\r \\n\n"
    "                          \\t \\\\ \\xHH escapes\n"
    "      --expect-bytes N    a reply is complete after N bytes\n"
    "      --expect TEXT       count replies not starting with TEXT as errors\n"
    "      --rounds N          send/reply rounds per connection (default 1;\n"
    "                          0: until the end; needs --expect-bytes)\n"
    "      --source A[,A...]   bind each call to the next source address\n"
    "      --reset             close with RST (no TIME_WAIT)\n"
    "      --hold              open -c connections and keep them for -d;\n"
    "                          report how many stood\n"
    "      --timeout SECONDS   fail a call after this long (default 10)\n"
    "      --json              print the report as one JSON object\n"
    "  -h, --help              this text\n"
    "\n"
    "Errors are counted by kind: refused, reset, timeout, unreachable,\n"
    "address (out of ports), descriptors (out of fds), mismatch, short,\n"
    "other. Exit status: 0 some calls succeeded (with --rounds 0: some round\n"
    "trips, and no errors), 1 none did, 2 bad usage.\n";

enum {
	OPT_WARMUP = 256,
	OPT_SEND,
	OPT_EXPECT_BYTES,
	OPT_EXPECT,
	OPT_ROUNDS,
	OPT_SOURCE,
	OPT_RESET,
	OPT_HOLD,
	OPT_TIMEOUT,
	OPT_JSON,
};

static const struct option bench_options[] = {
    {"connections", required_argument, NULL, 'c'},
    {"duration", required_argument, NULL, 'd'},
    {"total", required_argument, NULL, 'n'},
    {"warmup", required_argument, NULL, OPT_WARMUP},
    {"send", required_argument, NULL, OPT_SEND},
    {"expect-bytes", required_argument, NULL, OPT_EXPECT_BYTES},
    {"expect", required_argument, NULL, OPT_EXPECT},
    {"rounds", required_argument, NULL, OPT_ROUNDS},
    {"source", required_argument, NULL, OPT_SOURCE},
    {"reset", no_argument, NULL, OPT_RESET},
    {"hold", no_argument, NULL, OPT_HOLD},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"json", no_argument, NULL, OPT_JSON},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static int
hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Decode \r \n \t \\ \0 \xHH; returns the length or -1 on a bad escape. */
static ssize_t
unescape(const char *in, char *out)
{
	size_t n = 0;

	for (; *in != '\0'; in++) {
		if (*in != '\\') {
			out[n++] = *in;
			continue;
		}
		in++;
		switch (*in) {
		case 'r':
			out[n++] = '\r';
			break;
		case 'n':
			out[n++] = '\n';
			break;
		case 't':
			out[n++] = '\t';
			break;
		case '0':
			out[n++] = '\0';
			break;
		case '\\':
			out[n++] = '\\';
			break;
		case 'x': {
			int hi = hex_digit(in[1]),
			    lo = hi < 0 ? -1 : hex_digit(in[2]);
			if (lo < 0)
				return -1;
			out[n++] = (char)(hi * 16 + lo);
			in += 2;
			break;
		}
		default:
			return -1;
		}
	}
	return (ssize_t)n;
}

static int
read_file(const char *path, char **out, size_t *len)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		int err = -errno;
		close(fd);
		return err;
	}
	if (st.st_size > (64 << 20)) {
		close(fd);
		return -EFBIG;
	}
	*out = malloc((size_t)st.st_size + 1);
	if (*out == NULL) {
		close(fd);
		return -ENOMEM;
	}
	ssize_t n = pbx_read_all(fd, *out, (size_t)st.st_size, -1);
	close(fd);
	if (n < 0)
		return (int)n;
	*len = (size_t)n;
	return 0;
}

/* --send and --expect: TEXT with escapes, or @FILE (--send only). */
static int
parse_payload(
    const char *what, const char *arg, bool file_ok, char **out, size_t *len)
{
	if (file_ok && arg[0] == '@') {
		int r = read_file(arg + 1, out, len);
		if (r < 0)
			log_error(
			    "read %s '%s': %s", what, arg + 1, pbx_strerror(r));
		return r < 0 ? EXIT_USAGE : 0;
	}
	*out = malloc(strlen(arg) + 1);
	if (*out == NULL)
		return EXIT_RUNTIME;
	ssize_t n = unescape(arg, *out);
	if (n < 0)
		return cli_bad_value(what, arg,
		    "bad escape (use \\r \\n \\t \\\\ \\0 or \\xHH)");
	*len = (size_t)n;
	return 0;
}

static int
parse_sources(struct bench_opts *o, const char *arg)
{
	char *copy = strdup(arg), *save = NULL;
	int r = 0;

	if (copy == NULL)
		return EXIT_RUNTIME;
	for (char *tok = strtok_r(copy, ",", &save); tok != NULL && r == 0;
	     tok = strtok_r(NULL, ",", &save)) {
		struct pbx_hostport hp;
		if (o->nsources == BENCH_MAX_SOURCES)
			r = cli_bad_value(
			    "source", arg, "at most 64 addresses");
		else if (!args_hostport(
			     "source", tok, PBX_PARSE_PORT_OPTIONAL, &hp))
			r = EXIT_USAGE;
		else if (pbx_addr_resolve(&hp, PBX_RESOLVE_NUMERIC,
			     &o->sources[o->nsources], 1) < 0)
			r = cli_bad_value(
			    "source", tok, "expected an IP address");
		else
			o->nsources++;
	}
	free(copy);
	return r;
}

static int
parse_count(const char *what, const char *arg, unsigned long min,
    unsigned long max, uint64_t *out)
{
	unsigned long n;
	char expected[80];

	if (args_number(arg, min, max, &n)) {
		*out = n;
		return 0;
	}
	snprintf(expected, sizeof expected, "expected a number from %lu to %lu",
	    min, max);
	return cli_bad_value(what, arg, expected);
}

static int
parse_secs(const char *what, const char *arg, uint64_t *ms_out)
{
	int ms;

	if (!args_seconds(arg, 86400, &ms))
		return cli_bad_value(what, arg,
		    "expected seconds, more than 0 and at most 86400");
	*ms_out = (uint64_t)ms;
	return 0;
}

/* --warmup: as parse_secs, and 0 (the default: measure from the start). */
static int
parse_warmup(const char *arg, uint64_t *ms_out)
{
	int ms;

	if (!args_seconds_or_zero(arg, 86400, &ms))
		return cli_bad_value(
		    "warmup", arg, "expected seconds, from 0 to 86400");
	*ms_out = (uint64_t)ms;
	return 0;
}

struct bench_cli {
	struct bench_opts o;
	bool duration_set; /* -d given: with -n, both bound the run */
};

static int
parse_option(void *ctx, int c, const char *arg)
{
	struct bench_cli *cli = ctx;
	struct bench_opts *o = &cli->o;
	uint64_t v = 0;
	char *buf = NULL;
	int r;

	switch (c) {
	case 'c':
		r = parse_count("connections", arg, 1, 1000000, &v);
		o->conns = (unsigned)v;
		return r;
	case 'd':
		cli->duration_set = true;
		return parse_secs("duration", arg, &o->duration_ms);

	case 'n':
		return parse_count("total", arg, 1, 1000000000000ul, &o->total);
	case OPT_WARMUP:
		return parse_warmup(arg, &o->warmup_ms);
	case OPT_SEND:
		free(o->send);
		o->send = NULL;
		return parse_payload("send", arg, true, &o->send, &o->send_len);
	case OPT_EXPECT_BYTES:
		o->expect_bytes_set = true;
		return parse_count(
		    "expect-bytes", arg, 1, 1ul << 40, &o->expect_bytes);
	case OPT_EXPECT:
		r = parse_payload("expect", arg, false, &buf, &o->expect_len);
		o->expect = buf;
		return r;
	case OPT_ROUNDS:
		r = parse_count("rounds", arg, 0, 1000000000ul, &v);
		o->rounds = (unsigned)v;
		return r;
	case OPT_SOURCE:
		return parse_sources(o, arg);
	case OPT_RESET:
		o->reset = true;
		return 0;
	case OPT_HOLD:
		o->hold = true;
		return 0;
	case OPT_TIMEOUT:
		r = parse_secs("timeout", arg, &v);
		o->timeout_ms = (int)v;
		return r;
	case OPT_JSON:
		o->json = true;
		return 0;
	default:
		return EXIT_USAGE;
	}
}

static int
resolve_target(struct bench_opts *o, const char *text)
{
	struct pbx_hostport hp;

	o->address = text;
	if (!args_callee(text, &hp))
		return EXIT_USAGE;
	int n = pbx_addr_resolve(&hp, 0, &o->target, 1);
	if (n < 0) {
		log_error("resolve %s: %s", hp.host, pbx_strerror(n));
		return EXIT_RUNTIME;
	}
	return 0;
}

static int
check_combination(struct bench_opts *o, bool duration_set)
{
	if (o->rounds != 1 && !o->expect_bytes_set) {
		log_error(
		    "--rounds other than 1 needs --expect-bytes (a reply must end before the next round)");
		return EXIT_USAGE;
	}
	if (o->total != 0 && !duration_set)
		o->duration_ms = 0;
	for (size_t i = 0; i < o->nsources; i++) {
		if (pbx_addr_family(&o->sources[i]) !=
		    pbx_addr_family(&o->target)) {
			log_error(
			    "--source and ADDRESS must both be IPv4 or both IPv6");
			return EXIT_USAGE;
		}
	}
	if (o->hold && o->total != 0) {

		log_error("--hold runs for --duration; it takes no --total");
		return EXIT_USAGE;
	}
	return 0;
}

/* A load generator needs fds: lift the soft limit to the hard one. */
static void
raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/*
 * Some calls completed, or stood (--hold). With --rounds 0 no call ever
 * completes: there success is round trips, and no connection lost.
 */
static bool
succeeded(const struct bench_opts *o, const struct bench_stats *st)
{
	uint64_t errors = 0;

	if (o->hold)
		return st->held > 0;
	if (o->rounds != 0)
		return st->calls > 0;
	for (int i = 0; i < BENCH_ERR_COUNT; i++)
		errors += st->errors[i];
	return st->rounds > 0 && errors == 0;
}

/* After the options: ADDRESS, then the run and its report. */
static int
bench_main(struct bench_cli *cli, int argc, char **argv)
{
	struct bench_opts *o = &cli->o;
	struct bench_stats st;

	if (optind != argc - 1) {
		log_error(optind >= argc
			      ? "missing ADDRESS (see pbx bench --help)"
			      : "one ADDRESS only (see pbx bench --help)");
		return EXIT_USAGE;
	}
	int r = resolve_target(o, argv[optind]);
	if (r == 0)
		r = check_combination(o, cli->duration_set);
	if (r != 0)
		return r;
	raise_fd_limit();
	o->progress = !o->json && isatty(STDERR_FILENO);
	int e = bench_run(o, &st);
	if (e < 0) {
		log_error("run: %s", pbx_strerror(e));
		return EXIT_RUNTIME;
	}
	if (st.fatal < 0) {
		log_error("dial %s: %s", o->address, pbx_strerror(st.fatal));
		return EXIT_RUNTIME;
	}

	bench_report(o, &st);
	return succeeded(o, &st) ? EXIT_OK : EXIT_RUNTIME;
}

int
cli_bench(int argc, char **argv)
{
	struct bench_cli cli = {.o = {.conns = 50,
				    .duration_ms = 10000,
				    .rounds = 1,
				    .timeout_ms = 10000}};
	static const struct args_cmd cmd = {"bench", bench_usage, ":c:d:n:h",
	    bench_options, parse_option, NULL};

	log_init("bench", LOG_NORMAL, false, LOG_FORMAT_TEXT);
	int r = args_parse(&cmd, argc, argv, &cli);
	if (r == ARGS_GO_ON)
		r = bench_main(&cli, argc, argv);
	free(cli.o.send);
	free((char *)(uintptr_t)cli.o.expect);
	return r;
}
