/* SPDX-License-Identifier: MIT */
/*
 * serve_guard.h: the options of `pbx serve` that guard the door and bound
 * each call: deadlines, keepalive, access rules and per-address limits.
 */
#ifndef SERVE_GUARD_H
#define SERVE_GUARD_H

#include "../serve/serve.h"

#include <getopt.h>

enum {
	OPT_IDLE_TIMEOUT = 300,
	OPT_TIMEOUT,
	OPT_KILL_GRACE,
	OPT_KEEPALIVE,
	OPT_USER_TIMEOUT,
	OPT_RULES,
	OPT_MAX_PER_IP,
	OPT_PER_IP_PREFIX,
	OPT_REJECT_MESSAGE,
};

/* Entries for the option table, in --help order. */
#define SERVE_GUARD_OPTIONS                                                    \
	{"idle-timeout", required_argument, NULL, OPT_IDLE_TIMEOUT},           \
	    {"timeout", required_argument, NULL, OPT_TIMEOUT},                 \
	    {"kill-grace", required_argument, NULL, OPT_KILL_GRACE},           \
	    {"keepalive", required_argument, NULL, OPT_KEEPALIVE},             \
	    {"user-timeout", required_argument, NULL, OPT_USER_TIMEOUT},       \
	    {"rules", required_argument, NULL, OPT_RULES},                     \
	    {"max-per-ip", required_argument, NULL, OPT_MAX_PER_IP},           \
	    {"per-ip-prefix", required_argument, NULL, OPT_PER_IP_PREFIX},     \
	{                                                                      \
		"reject-message", required_argument, NULL, OPT_REJECT_MESSAGE  \
	}

/* The defaults of a server that faces the internet. */
void serve_guard_defaults(struct serve_opts *o);
/* Apply one of these options; returns 0 or EXIT_USAGE (said why). */
int serve_guard_option(struct serve_opts *o, int c, const char *arg);
/*
 * Once every option is in (and the log in its format): what depends on
 * several, and the rules file read. Returns 0 or EXIT_USAGE.
 */
int serve_guard_check(struct serve_opts *o);
/* Free what the options loaded (the rules). */
void serve_guard_fini(struct serve_opts *o);

#endif /* SERVE_GUARD_H */
