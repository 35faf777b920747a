/* SPDX-License-Identifier: MIT */
/*
 * event.c: every connection of every handler multiplexed in one process.
 * Accepting goes on in a batch until the kernel has nothing more (EAGAIN)
 * or the limit is reached; a handler that finishes at once (hello) never
 * touches epoll: accept4, write, close.
 */
#include "serve.h"

static void
on_listener(struct pbx_loop *loop, struct pbx_io *w, unsigned events)
{
	struct serve *srv = w->data;
	struct pbx_addr remote;

	(void)loop;
	(void)events;
	while (srv->live < srv->limit) {
		int fd = serve_accept_one(srv, &remote);
		if (fd < 0)
			break;
		serve_conn_begin(srv, fd, &remote);
	}
}

int
serve_event_run(struct serve *srv)
{
	srv->listen_io.cb = on_listener;
	serve_pause_accept(srv, srv->live >= srv->limit);
	return pbx_loop_run(srv->loop);
}
