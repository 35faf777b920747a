/* SPDX-License-Identifier: MIT */
/* args.c: strict parsing of option values, with one-line errors. */
#include "args.h"

#include "../log/log.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool
args_number(
    const char *text, unsigned long min, unsigned long max, unsigned long *out)
{
	char *end;

	/* strtoul takes " 5", "+5" and "-5" (wrapped): digits only here. */
	if (!isdigit((unsigned char)text[0]))
		return false;
	errno = 0;
	unsigned long v = strtoul(text, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		return false;
	*out = v;
	return true;
}

/*
 * DIGITS or DIGITS.DIGITS in [0, max], by hand: strtod would also take
 * " 2", "+2", "0x2", "1e3", "inf" and "nan". The milliseconds are exact
 * and rounded up, so that 0.0001 s does not become 0 ("no timeout").
 */
static bool
decimal_ms(const char *text, double max, long long *ms)
{
	const char *p = text;
	long long whole = 0, frac = 0, scale = 1000;
	bool more = false; /* nonzero digits past the milliseconds */

	if (!isdigit((unsigned char)*p))
		return false;
	for (; isdigit((unsigned char)*p); p++) {
		whole = whole * 10 + (*p - '0');
		if (whole > INT_MAX / 1000 || (double)whole > max)
			return false;
	}
	if (*p == '.') {
		p++;
		if (!isdigit((unsigned char)*p))
			return false;
		for (; isdigit((unsigned char)*p); p++) {
			if (scale > 1) {
				scale /= 10;
				frac += (*p - '0') * scale;
			} else if (*p != '0') {
				more = true;
			}
		}
	}
	if (*p != '\0')
		return false;
	long long v = whole * 1000 + frac + (more ? 1 : 0);
	if ((double)v > max * 1000.0 || v > INT_MAX)
		return false;
	*ms = v;
	return true;
}

bool
args_seconds(const char *text, double max, int *ms)
{
	long long v;

	if (!decimal_ms(text, max, &v) || v == 0)
		return false;
	*ms = (int)v;
	return true;
}

bool
args_seconds_or_zero(const char *text, double max, int *ms)
{
	long long v;

	if (!decimal_ms(text, max, &v))
		return false;
	*ms = (int)v;
	return true;
}

bool
args_hostport(
    const char *what, const char *text, int flags, struct pbx_hostport *out)
{
	struct pbx_parse_error e;

	if (pbx_hostport_parse(text, flags, out, &e) == 0)
		return true;
	if (e.length == 0)
		log_error("bad %s '%s': %s %s", what, text, e.part, e.reason);
	else
		log_error("bad %s '%s': %s '%.*s' %s", what, text, e.part,
		    (int)e.length, text + e.offset, e.reason);
	return false;
}

bool
args_callee(const char *text, struct pbx_hostport *out)
{

	if (!args_hostport("address", text, 0, out))
		return false;
	if (out->host[0] == '\0') {
		log_error("bad address '%s': host is missing", text);
		return false;
	}
	/* Port 0 means "any port" to bind; nothing answers a call to it. */
	if (out->port == 0) {
		log_error("bad address '%s': port 0 cannot be called", text);
		return false;
	}
	return true;
}

static int
bad_option(const char *cmd, int c, char *const *argv)
{

	const char *opt = argv[optind - 1];

	if (c == ':')
		log_error(
		    "option '%s' needs a value (see pbx %s --help)", opt, cmd);
	else if (optopt != 0)
		log_error(
		    "unknown option '-%c' (see pbx %s --help)", optopt, cmd);
	else
		log_error("unknown option '%s' (see pbx %s --help)", opt, cmd);
	return EXIT_USAGE;
}

int
args_parse(const struct args_cmd *cmd, int end, char **argv, void *ctx)
{
	int c;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(
		    end, argv, cmd->shortopts, cmd->longopts, NULL)) != -1) {
		if (c == 'h') {
			fputs(cmd->usage, stdout);
			if (cmd->usage_more != NULL)
				fputs(cmd->usage_more, stdout);
			return fflush(stdout) == 0 ? EXIT_OK : EXIT_RUNTIME;
		}
		if (c == '?' || c == ':')
			return bad_option(cmd->name, c, argv);
		int r = cmd->apply(ctx, c, optarg);
		if (r != 0)
			return r;
	}
	return ARGS_GO_ON;
}
