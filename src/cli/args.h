/* SPDX-License-Identifier: MIT */
/* args.h: option values and exit statuses shared by the subcommands. */
#ifndef ARGS_H
#define ARGS_H

#include "pbx.h"

#include <getopt.h>
#include <stdbool.h>

enum {
	EXIT_OK = 0,      /* done */
	EXIT_RUNTIME = 1, /* refused, unreachable, timed out, in use, ... */
	EXIT_USAGE = 2,   /* bad option, bad address, bad value */
};

/* A whole decimal number in [min, max]; false if anything else. */
bool args_number(
    const char *text, unsigned long min, unsigned long max, unsigned long *out);

/*
 * Seconds as plain decimal digits with an optional fraction, "2", "0.5" or
 * "010.250", in (0, max]; the result in milliseconds, rounded up. Nothing
 * else: no sign, space, exponent, hex, inf or nan, no digitless side of the
 * point (".5", "2."), no unit ("2s").
 */
bool args_seconds(const char *text, double max, int *ms);

/* The same in [0, max]: "0" and "0.0" too. */
bool args_seconds_or_zero(const char *text, double max, int *ms);

/*
 * Parse an address argument; on error print
 * "pbx: CMD: bad WHAT 'TEXT': PART 'BAD' REASON" and return false.
 */
bool args_hostport(
    const char *what, const char *text, int flags, struct pbx_hostport *out);

/*
 * The address of a call (pbx connect, pbx bench): args_hostport with a
 * host and a port other than 0 required; "bad address 'TEXT': ..." else.
 */
bool args_callee(const char *text, struct pbx_hostport *out);

/* A subcommand's options, for args_parse. */
struct args_cmd {
	const char *name;  /* "serve": in messages and the --help hint */
	const char *usage; /* printed by -h/--help */
	const char *shortopts;
	const struct option *longopts;
	/* Apply one option; returns 0 or an exit status (EXIT_USAGE). */
	int (*apply)(void *ctx, int c, const char *arg);
	/* Printed after usage (C caps a literal at 4095 bytes); or NULL. */
	const char *usage_more;
};

#define ARGS_GO_ON (-1)

/*
 * Parse the options among argv[1..end) in any order with the other words,
 * which follow from optind on. Returns ARGS_GO_ON, or the exit status to
 * return at once (after --help, or a one-line usage error).
 */
int args_parse(const struct args_cmd *cmd, int end, char **argv, void *ctx);

#endif /* ARGS_H */
