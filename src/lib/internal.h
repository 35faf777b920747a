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

#endif /* PBX_INTERNAL_H */
