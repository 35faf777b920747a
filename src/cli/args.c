/* SPDX-License-Identifier: MIT */
/* args.c: strict parsing of option values, with one-line errors. */
#include "args.h"

#include "../log/log.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <math.h> /* isfinite */
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

bool
args_seconds(const char *text, double max, int *ms)
{
	char *end;

	if (!isdigit((unsigned char)text[0]) && text[0] != '.')
		return false;
	errno = 0;
	double v = strtod(text, &end);
	if (errno != 0 || *end != '\0' || !isfinite(v) || v <= 0 || v > max)
		return false;
	/* Round up: 0.0001 s must not become "no timeout". */
	double x = v * 1000.0;
	*ms = (int)x;
	if ((double)*ms < x)
		(*ms)++;
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
