/* SPDX-License-Identifier: MIT */
/* internal.h: what the libpbx modules share and do not export. */
#ifndef PBX_INTERNAL_H
#define PBX_INTERNAL_H

#include "pbx.h"

#include <stdint.h>

/* Call a trace callback, if any, with one formatted line. */
void pbx__trace(pbx_trace_cb cb, void *arg, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Monotonic clock in milliseconds. */
uint64_t pbx__now_ms(void);

/* "AF_INET" or "AF_INET6", for trace lines. */
const char *pbx__family_name(int family);

/* socket(family, SOCK_STREAM) with SOCK_CLOEXEC | flags, traced: the fd or
 * -errno. */
int pbx__socket(int family, int flags, pbx_trace_cb trace, void *arg);

/* bind, traced (done or failed): 0 or -errno. */
int pbx__bind(int fd, const struct pbx_addr *a, pbx_trace_cb trace, void *arg);

/*
 * Readiness instead of I/O, for a mover that bypasses the transport of a
 * plain stream (the relay's splice(2)): the loop hands the fd's events
 * (PBX_READABLE and PBX_WRITABLE as asked, PBX_HANGUP) to ops->ready,
 * alongside the stream's own reads and writes. events 0 stops it.
 * 0 or -errno.
 */
int pbx__stream_poll(struct pbx_stream *s, unsigned events);

#endif /* PBX_INTERNAL_H */
