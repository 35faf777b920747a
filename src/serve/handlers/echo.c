/* SPDX-License-Identifier: MIT */
/* echo.c: RFC 862: send back every byte until the caller half-closes. */
#include "../serve.h"

static void
echo_start(struct serve_conn *c)
{
	int r = conn_read_start(c);
	if (r < 0)
		conn_end(c, r);
}

/*
 * Bytes arrive in the server's shared buffer and go straight back; only
 * what the socket does not take is copied, and reading pauses until it
 * is gone, so a caller that never reads costs one buffer at most.
 */
static void
echo_read(struct serve_conn *c, ssize_t n, char *buf)
{
	if (n <= 0) {
		conn_end(c, (int)n);
		return;
	}
	int r = conn_send(c, buf, (size_t)n);
	if (r < 0)
		conn_end(c, r);
	else if (conn_queued(c) > 0)
		conn_read_stop(c);
}

static void
echo_sent(struct serve_conn *c)
{
	echo_start(c);
}

const struct serve_handler serve_echo = {
    .name = "echo",
    .start = echo_start,
    .read = echo_read,
    .sent = echo_sent,
};
