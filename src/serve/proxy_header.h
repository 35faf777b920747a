/* SPDX-License-Identifier: MIT */
/*
 * proxy_header.h: the PROXY protocol header (HAProxy doc/proxy-protocol.txt,
 * v1 text and v2 binary), parsed and built. Pure: no I/O, no logging, no
 * allocation, no state between calls, so the server can call the parser on
 * every readable event with all the bytes peeked so far.
 */
#ifndef PROXY_HEADER_H
#define PROXY_HEADER_H

#include "pbx.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* The versions a listener accepts: a bit mask. */
enum {
	PROXY_V1 = 1 << 0,
	PROXY_V2 = 1 << 1,
};

/*
 * The longest header the parser accepts. v1 is at most 107 bytes by the
 * spec; v2 may announce 16 + 65535 bytes, which we refuse to buffer: 4096
 * (nginx's limit too) holds a UNIX address block with SSL, AUTHORITY and
 * UNIQUE_ID TLVs many times over. A caller's peek buffer of this size is
 * always enough: with n >= PROXY_HEADER_MAX the parser never says "need
 * more".
 */
#define PROXY_HEADER_MAX 4096
#define PROXY_V1_MAX 107

/* Longest PP2_TYPE_UNIQUE_ID value (the spec's limit). */
#define PROXY_UNIQUE_ID_MAX 128

/*
 * A parsed header. Every byte is copied out of the caller's buffer (which
 * the server reuses for the next peek): nothing here points into it.
 */
struct proxy_header {
	int version; /* 1 or 2 */
	/*
	 * The header carries no addresses to use: v1 UNKNOWN, v2 LOCAL, or
	 * v2 PROXY with family UNSPEC or UNIX (a UNIX path is no TCP peer;
	 * the spec lets a receiver use the real endpoints for families it
	 * does not support). The caller keeps the socket's own addresses;
	 * source and dest then have len 0.
	 */
	bool local;
	struct pbx_addr source; /* the client (when !local) */
	struct pbx_addr dest;   /* the address the client reached */
	size_t len;             /* the whole header, in bytes */
	/* v2 TLVs worth passing on to a handler (only with v2 PROXY). */
	char authority[256]; /* PP2_TYPE_AUTHORITY (SNI); "" if absent */
	uint8_t unique_id[PROXY_UNIQUE_ID_MAX]; /* PP2_TYPE_UNIQUE_ID */
	size_t unique_id_len;                   /* 0 if absent */
	struct {
		bool present;    /* a PP2_TYPE_SSL TLV was sent */
		uint8_t client;  /* PP2_CLIENT_SSL 0x01, _CERT_CONN 0x02, ... */
		uint32_t verify; /* 0: the client certificate was verified */
		char version[32]; /* PP2_SUBTYPE_SSL_VERSION; "" if absent */
	} ssl;
};

/*
 * Parse the first n bytes a peer sent, which may be only the beginning of
 * a header. Returns:
 *   > 0              the header is complete and valid: its length (bytes
 *                    after it are payload, left to the caller);
 *   0                a valid beginning: wait for more bytes;
 *   -EINVAL          not a valid header (never a prefix of one): *why says
 *                    why (a static string);
 *   -EPROTONOSUPPORT a header of a version not in versions (*why says so).
 * Rejection is as early as the bytes allow (a v1 line without CRLF at byte
 * 107, a v2 length over PROXY_HEADER_MAX at byte 16), so a caller never
 * waits for bytes that cannot help. *out is meaningful only after > 0; why
 * may be NULL. The addresses are AF_INET or AF_INET6 with ports set; an
 * IPv4-mapped IPv6 address in a TCP6 header is returned as it was sent.
 */
ssize_t proxy_header_parse(const void *buf, size_t n, unsigned versions,
    struct proxy_header *out, const char **why);

/*
 * Build a header (1: v1 text, 2: v2 binary) saying src connected to dst,
 * into buf (size bytes; no NUL is added). Mixed families are unified: an
 * IPv4-mapped address beside an IPv4 (or mapped) one is sent as TCP4, an
 * IPv4 address beside a real IPv6 one is mapped into TCP6. A src or dst
 * with len 0 (or NULL) gives v1 "PROXY UNKNOWN\r\n" or a v2 LOCAL header.
 * Returns the length, -ENOSPC if buf is too small, -EAFNOSUPPORT for a
 * family other than AF_INET/AF_INET6, or -EINVAL for another version.
 * PROXY_V1_MAX bytes are always enough (a v2 header built here is at most
 * 52).
 */
ssize_t proxy_header_build(int version, const struct pbx_addr *src,
    const struct pbx_addr *dst, void *buf, size_t size);

#endif /* PROXY_HEADER_H */
