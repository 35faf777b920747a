/* SPDX-License-Identifier: MIT */
/*
 * door.c: who may come in. The access rules and the per-address limits
 * decide on the caller's real address before a byte is read; the rules
 * are read again on SIGHUP, and a program gets what they set.
 */
#include "../log/log.h"
#include "emit.h"
#include "ip_limits.h"
#include "rules.h"
#include "serve.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* SIGHUP: the new rules, or, if they do not parse, the old ones kept. */
static void
on_hup(struct pbx_loop *loop, struct pbx_signal *s)
{
	struct serve *srv = s->data;
	const char *path = srv->opts->rules_path;
	struct serve_rules *fresh;
	char err[512];

	(void)loop;
	if (path == NULL)
		return; /* nothing to read again: SIGHUP is harmless */
	if (serve_rules_load(path, &fresh, err, sizeof err) < 0) {
		log_error("reload rules: %s (the %zu rules in force stay)", err,
		    serve_rules_count(srv->rules));
		return;
	}
	serve_rules_free(srv->rules_owned);
	srv->rules_owned = fresh;
	srv->rules = fresh;
	log_notice("rules reloaded from %s: %zu rules", path,
	    serve_rules_count(fresh));
}

int
serve_door_setup(struct serve *srv, struct serve_limits *shared)
{
	const struct serve_opts *o = srv->opts;

	srv->rules = o->rules;
	srv->sig_hup =
	    (struct pbx_signal){.signo = SIGHUP, .cb = on_hup, .data = srv};
	int r = pbx_signal_start(srv->loop, &srv->sig_hup);
	if (r < 0 || o->max_per_ip == 0)
		return r;
	if (shared != NULL) {
		srv->limits = shared;
		return 0;
	}
	struct serve_limits_opts lo = {
	    .max_per_key = o->max_per_ip,
	    .prefix4 = o->prefix4,
	    .prefix6 = o->prefix6,
	    .capacity = o->max_conns,
	};
	r = serve_limits_new(&srv->limits, &lo);
	srv->limits_owned = r == 0;
	return r;
}

void
serve_door_fini(struct serve *srv)
{
	serve_rules_free(srv->rules_owned);
	srv->rules_owned = NULL;
	srv->rules = NULL;
	if (srv->limits_owned)
		serve_limits_free(srv->limits);
	srv->limits = NULL;
}

void
serve_local_of(const struct serve *srv, int fd, struct pbx_addr *local)
{
	*local = srv->local;
	if (pbx_addr_is_any(local))
		pbx_addr_local(fd, local);
}

/* Over the limit: say so if asked to (best effort, never waiting). */
static void
reject(struct serve *srv, int fd, const struct pbx_addr *remote,
    const struct pbx_addr *via, int count)
{
	const char *msg = srv->opts->reject_message;

	if (serve_emitting()) {
		struct pbx_addr local;
		serve_local_of(srv, fd, &local);
		serve_emit_reject(
		    remote, via, &local, "per-ip", (unsigned)count);
	}
	if (msg != NULL) {
		struct iovec iov[2] = {
		    {.iov_base = (void *)(uintptr_t)msg,
			.iov_len = strlen(msg)},
		    {.iov_base = (void *)(uintptr_t) "\n", .iov_len = 1},
		};
		struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};
		ssize_t w = sendmsg(fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
		(void)w; /* a caller that cannot take it misses nothing */
	}
}

int
serve_door_admit(struct serve *srv, int fd, const struct pbx_addr *remote,
    const struct pbx_addr *via)
{
	if (srv->rules != NULL) {
		const struct serve_rule *rule =
		    serve_rules_match(srv->rules, remote);
		if (rule == NULL || !serve_rule_allows(rule)) {
			if (serve_emitting()) {
				struct pbx_addr local;
				serve_local_of(srv, fd, &local);
				serve_emit_deny(remote, via, &local,
				    rule != NULL ? serve_rule_line(rule) : 0);
			}
			return SERVE_DOOR_DENIED;
		}
	}
	if (srv->limits == NULL)
		return SERVE_DOOR_IN;
	int n = serve_limits_take(srv->limits, srv->worker, remote);
	if (n > 0)
		return SERVE_DOOR_COUNTED;
	if (n == -EBUSY)
		reject(srv, fd, remote, via, (int)srv->opts->max_per_ip);
	else
		log_error("count callers: %s", pbx_strerror(n));
	return SERVE_DOOR_DENIED;
}

void
serve_door_leave(struct serve *srv, const struct pbx_addr *remote)
{
	if (srv->limits != NULL)
		serve_limits_give(srv->limits, srv->worker, remote);
}

size_t
serve_door_vars(struct serve *srv, const struct pbx_addr *remote,
    const char **vars, size_t max)
{
	size_t n = 0;

	if (srv->rules != NULL) {
		const struct serve_rule *rule =
		    serve_rules_match(srv->rules, remote);
		size_t nv = rule != NULL ? serve_rule_nvars(rule) : 0;
		for (size_t i = 0; i < nv && n < max; i++)
			vars[n++] = serve_rule_var(rule, i);
	}
	if (srv->limits != NULL && n < max) {
		snprintf(srv->concurrency, sizeof srv->concurrency,
		    "TCPCONCURRENCY=%u",
		    serve_limits_count(srv->limits, remote));
		vars[n++] = srv->concurrency;
	}
	return n;
}
