/* SPDX-License-Identifier: MIT */
/* discard.c: RFC 863: read and drop everything until the caller closes. */
#include "../serve.h"

static void
discard_start(struct serve_conn *c)
{
	int r = conn_read_start(c);
	if (r < 0)
		conn_end(c, r);
}

static void
discard_read(struct serve_conn *c, ssize_t n, char *buf)
{
	(void)buf;
	if (n <= 0)
		conn_end(c, (int)n);
}

const struct serve_handler serve_discard = {
    .name = "discard",
    .start = discard_start,
    .read = discard_read,
};
