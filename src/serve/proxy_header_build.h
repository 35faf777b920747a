/* SPDX-License-Identifier: MIT */
/*
 * proxy_header_build.h: what the PROXY header's parser (proxy_header.c)
 * and builder (proxy_header_build.c) share: the v2 wire constants.
 */
#ifndef PROXY_HEADER_BUILD_H
#define PROXY_HEADER_BUILD_H

#include "proxy_header.h"

#include <stdint.h>

/* The v2 signature, the first 12 bytes of every v2 header. */
extern const uint8_t proxy_v2_sig[12];

enum {
	V2_FIXED = 16, /* signature, version/command, family, length */
	V2_LOCAL = 0x0,
	V2_PROXY = 0x1,
};

#endif /* PROXY_HEADER_BUILD_H */
