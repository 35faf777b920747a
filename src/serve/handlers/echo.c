/* SPDX-License-Identifier: MIT */
/* echo.c: RFC 862: send back every byte until the caller half-closes. */
#include "../serve.h"

#include <errno.h>

static void
echo_start(struct serve_conn *c)
{
	conn_want(c, PBX_READABLE);
}

/*
 * Read into the server's shared buffer and write straight back; only what
 * the socket does not take is copied into the record, and reading pauses
 * until it is gone, so a caller that never reads costs one buffer at most.
 */
static void
echo_ready(struct serve_conn *c, unsigned events)
{
	char *buf = c->srv->scratch;
	int r;

	(void)events;
	if (c->pending_len > 0) {
		r = conn_flush_pending(c);
		if (r == -EAGAIN)
			return;
		if (r < 0) {
			conn_end(c, r);
			return;
		}
		conn_want(c, PBX_READABLE);
		return;
	}
	ssize_t n = conn_read(c, buf, c->srv->scratch_size);
	if (n == -EAGAIN)
		return;
	if (n <= 0) {
		conn_end(c, (int)n);
		return;
	}
	ssize_t w = conn_write(c, buf, (size_t)n);
	if (w == n)
		return;
	if (w < 0 && w != -EAGAIN) {
		conn_end(c, (int)w);
		return;
	}
	size_t sent = w > 0 ? (size_t)w : 0;
	r = conn_keep_pending(c, buf + sent, (size_t)n - sent);
	if (r < 0) {
		conn_end(c, r);
		return;
	}
	conn_want(c, PBX_WRITABLE);
}

const struct serve_handler serve_echo = {
    .name = "echo",
    .start = echo_start,
    .ready = echo_ready,
};
