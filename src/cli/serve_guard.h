/* SPDX-License-Identifier: MIT */
/*
 * serve_guard.h: the options of `pbx serve` that guard the door and bound
 * each call: deadlines, keepalive, access rules and per-address limits.
 */
#ifndef SERVE_GUARD_H
#define SERVE_GUARD_H

#include "../serve/serve.h"

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
	OPT_PROXY_PROTOCOL,
	OPT_PROXY_FROM,
	OPT_PROXY_REQUIRED,
	OPT_PROXY_TIMEOUT,
};

/* The defaults of a server that faces the internet. */
void serve_guard_defaults(struct serve_opts *o);
/* Apply one of these options; returns 0 or EXIT_USAGE (said why). */
int serve_guard_option(struct serve_opts *o, int c, const char *arg);
/*
 * Once every option is in (and the log in its format): what depends on
 * several, and the rules file read. Returns 0 or EXIT_USAGE.
 */
int serve_guard_check(struct serve_opts *o);
/* Free what the options loaded (the rules, the trusted proxies). */
void serve_guard_fini(struct serve_opts *o);

#endif /* SERVE_GUARD_H */
