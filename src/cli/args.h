/* SPDX-License-Identifier: MIT */
/* args.h: option values and exit statuses shared by the subcommands. */
#ifndef ARGS_H
#define ARGS_H

#include "pbx.h"

#include <stdbool.h>

enum {
	EXIT_OK = 0,      /* done */
	EXIT_RUNTIME = 1, /* refused, unreachable, timed out, in use, ... */
	EXIT_USAGE = 2,   /* bad option, bad address, bad value */
};

/* A whole decimal number in [min, max]; false if anything else. */
bool args_number(
    const char *text, unsigned long min, unsigned long max, unsigned long *out);

/* Seconds as "2" or "0.5" in (0, max]; the result in milliseconds. */
bool args_seconds(const char *text, double max, int *ms);

/*
 * Parse an address argument; on error print
 * "pbx: CMD: bad WHAT 'TEXT': PART 'BAD' REASON" and return false.
 */
bool args_hostport(
    const char *what, const char *text, int flags, struct pbx_hostport *out);

/*
 * Report what getopt_long did not like (c is '?' or ':') and return
 * EXIT_USAGE. cmd names the subcommand for the --help hint.
 */
int args_bad_option(const char *cmd, int c, char *const *argv);

#endif /* ARGS_H */
