/* SPDX-License-Identifier: MIT */
/*
 * serial.c: the paper's first model: accept one caller, finish with it,
 * then accept the next. It is the event model with room for one: the
 * listener is not watched while a connection is in progress, and the
 * kernel's backlog holds the queue.
 */
#include "serve.h"

int
serve_serial_run(struct serve *srv)
{
	srv->limit = 1;
	return serve_event_run(srv);
}
