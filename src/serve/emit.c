/* SPDX-License-Identifier: MIT */
/* emit.c: the server's events, handed to the log module's writer. */
#include "emit.h"

#include "../log/event.h"
#include "../log/log.h"

#include <sys/wait.h>

bool
serve_emitting(void)
{
	return log_level() >= LOG_VERBOSE;
}

void
serve_emit_listen(const struct pbx_addr *local)
{
	log_emit(&(struct event){.kind = EVENT_LISTEN, .local = local});
}

void
serve_emit_stop(uint64_t served)
{
	log_emit(&(struct event){.kind = EVENT_STOP, .count = served});
}

void
serve_emit_accept(const struct pbx_addr *remote, const struct pbx_addr *via,
    const struct pbx_addr *local, long pid)
{
	log_emit(&(struct event){.kind = EVENT_ACCEPT,
	    .remote = remote,
	    .via = via,
	    .local = local,
	    .pid = pid});
}

void
serve_emit_start(const struct pbx_addr *remote, long pid, const char *program)
{
	log_emit(&(struct event){.kind = EVENT_START,
	    .remote = remote,
	    .pid = pid,
	    .program = program});
}

void
serve_emit_exit(
    const struct pbx_addr *remote, long pid, int wstatus, uint64_t ms)
{
	log_emit(&(struct event){.kind = EVENT_EXIT,
	    .remote = remote,
	    .pid = pid,
	    .has_ms = true,
	    .ms = ms,
	    .exited = !WIFSIGNALED(wstatus),
	    .status = WEXITSTATUS(wstatus),
	    .signo = WIFSIGNALED(wstatus) ? WTERMSIG(wstatus) : 0});
}

void
serve_emit_end(const struct pbx_addr *remote, bool has_bytes, uint64_t in,
    uint64_t out, uint64_t ms, int err)
{
	log_emit(&(struct event){.kind = EVENT_END,
	    .remote = remote,
	    .has_bytes = has_bytes,
	    .bytes_in = in,
	    .bytes_out = out,
	    .has_ms = true,
	    .ms = ms,
	    .end = event_end_of(err),
	    .err = err});
}

void
serve_emit_deny(const struct pbx_addr *remote, const struct pbx_addr *via,
    const struct pbx_addr *local, unsigned rule)
{
	log_emit(&(struct event){.kind = EVENT_DENY,
	    .remote = remote,
	    .via = via,
	    .local = local,
	    .reason = rule == 0 ? "no-rule" : NULL,
	    .rule = rule});
}

void
serve_emit_reject(const struct pbx_addr *remote, const struct pbx_addr *via,
    const struct pbx_addr *local, const char *reason, unsigned count)
{
	log_emit(&(struct event){.kind = EVENT_REJECT,
	    .remote = remote,
	    .via = via,
	    .local = local,
	    .reason = reason,
	    .count = count});
}

void
serve_log_run_failed(const struct serve *srv, int err)
{
	log_error("run %s: %s", srv->opts->argv[0], pbx_strerror(err));
}
