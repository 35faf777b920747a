/* SPDX-License-Identifier: MIT */
/*
 * serial.c: the paper's first model: accept one caller, finish with it,
 * then accept the next. The listener is simply not watched while a
 * connection is in progress; the kernel's backlog holds the queue.
 */
#include "serve.h"

static void
on_listener(struct pbx_loop *loop, struct pbx_io *w, unsigned events)
{
	struct serve *srv = w->data;
	struct pbx_addr remote;

	(void)loop;
	(void)events;
	int fd = serve_accept_one(srv, &remote);
	if (fd >= 0)
		serve_conn_begin(srv, fd, &remote);
}

int
serve_serial_run(struct serve *srv)
{
	srv->limit = 1;
	srv->listen_io.cb = on_listener;
	serve_pause_accept(srv, false);
	return pbx_loop_run(srv->loop);
}
