/* SPDX-License-Identifier: MIT */
/* hello.c: the paper's greeting, "Hello, person from ADDR", then close. */
#include "../serve.h"

#include <stdio.h>

/* The common case is one write: the greeting fits any send buffer. */
static void
hello_start(struct serve_conn *c)
{
	char addr[PBX_ADDR_STRLEN], line[PBX_ADDR_STRLEN + 32];

	pbx_addr_format(&c->remote, addr, sizeof addr);
	int len = snprintf(line, sizeof line, "Hello, person from %s\n", addr);
	int r = conn_send(c, line, (size_t)len);
	if (r < 0)
		conn_end(c, r);
	else if (conn_queued(c) == 0)
		conn_finish(c);
	/* else hello_sent finishes once the rest is out */
}

static void
hello_sent(struct serve_conn *c)
{
	conn_finish(c);
}

const struct serve_handler serve_hello = {
    .name = "hello",
    .start = hello_start,
    .sent = hello_sent,
};
