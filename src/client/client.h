/* SPDX-License-Identifier: MIT */
/* client.h: the caller's side: dial, then relay or hand over to a program. */
#ifndef CLIENT_H
#define CLIENT_H

#include "pbx.h"

#include <stdbool.h>

struct client_opts {
	const char *address; /* as typed, for messages */
	struct pbx_hostport where;
	bool has_source;
	struct pbx_hostport source; /* the paper's bind before connect */
	int timeout_ms;             /* per address; 0: the kernel's */
	const char *const *argv;    /* a program for fds 6/7, or NULL */
	/*
	 * What to send before anything else once the call is placed (a
	 * PROXY header), or NULL: preamble builds it into buf from the
	 * call's two ends (src: the caller, dst: who answered) and returns
	 * its length or -errno. preamble_source, if set, is the caller to
	 * name instead of this socket's own address (borrowed).
	 */
	ssize_t (*preamble)(const struct pbx_addr *src,
	    const struct pbx_addr *dst, void *buf, size_t size, void *arg);
	void *preamble_arg;
	const struct pbx_addr *preamble_source;
};

/* How a call went; the CLI turns it into an exit status. */
enum client_status {
	CLIENT_OK = 0,     /* the call ended normally */
	CLIENT_FAILED = 1, /* refused, unreachable, timed out, reset, ... */
};

/* Dial and relay (or exec the program). */
enum client_status client_connect(const struct client_opts *o);

#endif /* CLIENT_H */
