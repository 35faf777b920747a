/* SPDX-License-Identifier: MIT */
/*
 * emit.h: the server's events (accept, program start and exit, end), as
 * the core emits them; the log module renders them as text or JSON.
 */
#ifndef SERVE_EMIT_H
#define SERVE_EMIT_H

#include "serve.h"

#include <stdbool.h>
#include <stdint.h>

/* Ready: the readiness line (always), and the closing count. */
void serve_emit_listen(const struct pbx_addr *local);
void serve_emit_stop(uint64_t served);

/* Whether connection events are written at all (-v): skip the work. */
bool serve_emitting(void);

/* pid: the fork model's child, or 0. */
/* via: the PROXY sender the call came through, or NULL. */
void serve_emit_accept(const struct pbx_addr *remote,
    const struct pbx_addr *via, const struct pbx_addr *local, long pid);
void serve_emit_start(
    const struct pbx_addr *remote, long pid, const char *program);
void serve_emit_exit(
    const struct pbx_addr *remote, long pid, int wstatus, uint64_t ms);
/* has_bytes: the server moved the bytes itself (not a program). */
void serve_emit_end(const struct pbx_addr *remote, bool has_bytes, uint64_t in,
    uint64_t out, uint64_t ms, int err);

/* Turned away at the door: rule is the deciding rule's line (0: none). */
void serve_emit_deny(const struct pbx_addr *remote, const struct pbx_addr *via,
    const struct pbx_addr *local, unsigned rule);
void serve_emit_reject(const struct pbx_addr *remote,
    const struct pbx_addr *via, const struct pbx_addr *local,
    const char *reason, unsigned count);

/* "run PROGRAM: reason", whatever the level: a program did not start. */
void serve_log_run_failed(const struct serve *srv, int err);

#endif /* SERVE_EMIT_H */
