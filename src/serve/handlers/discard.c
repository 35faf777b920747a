/* SPDX-License-Identifier: MIT */
/* discard.c: RFC 863: read and drop everything until the caller closes. */
#include "../serve.h"

#include <errno.h>

static void
discard_start(struct serve_conn *c)
{
	conn_want(c, PBX_READABLE);
}

static void
discard_ready(struct serve_conn *c, unsigned events)
{
	(void)events;
	ssize_t n = conn_read(c, c->srv->scratch, c->srv->scratch_size);
	if (n == -EAGAIN || n > 0)
		return;
	conn_end(c, (int)n);
}

const struct serve_handler serve_discard = {
    .name = "discard",
    .start = discard_start,
    .ready = discard_ready,
};
