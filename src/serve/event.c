/* SPDX-License-Identifier: MIT */
/*
 * event.c: every connection of every handler multiplexed in one process.
 * Accepting goes on in a batch until the kernel has nothing more (EAGAIN)
 * or the limit is reached; a handler that finishes at once (hello) never
 * touches epoll: accept4, write, close.
 */
#include "serve.h"

int
serve_event_run(struct serve *srv)
{
	return serve_accept_loop(srv, serve_conn_begin);
}
