/* SPDX-License-Identifier: MIT */
/* hello.c: the paper's greeting, "Hello, person from ADDR", then close. */
#include "../serve.h"

#include <errno.h>
#include <stdio.h>

static void
hello_ready(struct serve_conn *c, unsigned events)
{
	(void)events;
	int r = conn_flush_pending(c);
	if (r == 0)
		conn_finish(c);
	else if (r != -EAGAIN)
		conn_end(c, r);
}

/* The common case is one write: the greeting fits any send buffer. */
static void
hello_start(struct serve_conn *c)
{
	char addr[PBX_ADDR_STRLEN], line[PBX_ADDR_STRLEN + 32];

	pbx_addr_format(&c->remote, addr, sizeof addr);
	int len = snprintf(line, sizeof line, "Hello, person from %s\n", addr);
	ssize_t n = conn_write(c, line, (size_t)len);
	if (n == len) {
		conn_finish(c);
		return;
	}
	if (n < 0 && n != -EAGAIN) {
		conn_end(c, (int)n);
		return;
	}

	size_t sent = n > 0 ? (size_t)n : 0;
	int r = conn_keep_pending(c, line + sent, (size_t)len - sent);
	if (r < 0) {
		conn_end(c, r);
		return;
	}
	conn_want(c, PBX_WRITABLE);
}

const struct serve_handler serve_hello = {
    .name = "hello",
    .start = hello_start,
    .ready = hello_ready,
};
