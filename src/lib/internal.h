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

#endif /* PBX_INTERNAL_H */
