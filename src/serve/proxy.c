/* SPDX-License-Identifier: MIT */
/*
 * proxy.c: --proxy-protocol: a caller from a trusted proxy first says who
 * the client is. The header is read here, before any model takes the
 * call, so the door, the greeting, the log and a program's environment
 * all see the client; it is peeked, then exactly its bytes are read, so
 * what follows stays in the socket for the handler or the program.
 */
#include "../log/log.h"
#include "emit.h"
#include "proxy_header.h"
#include "rules.h"
#include "serve.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

/* A call whose header has not all come yet. */
struct proxy_wait {
	struct pbx_io io; /* the socket, watched until the header is in */
	struct pbx_timer timer;
	struct serve *srv;
	struct pbx_addr sender;
	struct proxy_wait *next, *prev;
};

static void
unlink_wait(struct proxy_wait *w)
{
	struct serve *srv = w->srv;

	if (w->prev != NULL)
		w->prev->next = w->next;
	else
		srv->proxy_waits = w->next;
	if (w->next != NULL)
		w->next->prev = w->prev;
	pbx_io_stop(srv->loop, &w->io);
	pbx_timer_stop(srv->loop, &w->timer);
	srv->live--;
}

/* Refused: said why (with -v), closed, and the record gone. */
static void
refuse(struct proxy_wait *w, const char *why)
{
	struct serve *srv = w->srv;
	int fd = w->io.fd;

	if (serve_emitting()) {
		struct pbx_addr local;
		serve_local_of(srv, fd, &local);
		serve_emit_reject(&w->sender, NULL, &local, why, 0);
	}
	unlink_wait(w);
	close(fd);
	free(w);
	serve_pause_accept(srv, srv->live >= srv->limit);
}

/* The header is in: the client's call goes through the door. */
static void
admit(struct proxy_wait *w, const struct proxy_header *h)
{
	struct serve *srv = w->srv;
	int fd = w->io.fd;
	struct serve_proxied p = {.via = w->sender};
	struct pbx_addr client = w->sender;

	if (!h->local) {
		client = h->source;
		p.dest = h->dest;
	}
	unlink_wait(w);
	free(w);
	if (serve_door_admit(srv, fd, &client, &p.via) == SERVE_DOOR_DENIED) {
		close(fd);
		serve_pause_accept(srv, srv->live >= srv->limit);
		return;
	}
	srv->proxied = &p; /* for the take only */
	srv->take(srv, fd, &client);
	srv->proxied = NULL;
}

static void
on_readable(struct pbx_loop *loop, struct pbx_io *io, unsigned events)
{
	struct proxy_wait *w = io->data;
	struct serve *srv = w->srv;
	struct proxy_header h;
	const char *why;

	(void)loop;
	(void)events;
	size_t cap = srv->scratch_size < PROXY_HEADER_MAX ? srv->scratch_size
							  : PROXY_HEADER_MAX;
	ssize_t n = recv(io->fd, srv->scratch, cap, MSG_PEEK);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		refuse(w, n == 0 ? "proxy header: the sender hung up"
				 : "proxy header: read failed");
		return;
	}
	ssize_t len = proxy_header_parse(
	    srv->scratch, (size_t)n, srv->opts->proxy_versions, &h, &why);
	if (len == 0)
		return; /* a valid start: wait for the rest */
	if (len == -EPROTONOSUPPORT)
		why = "proxy header: a version this listener does not take";
	if (len < 0) {
		refuse(w, why);
		return;
	}
	/* What was peeked is there: this takes exactly the header. */
	if (recv(io->fd, srv->scratch, (size_t)len, 0) != len) {
		refuse(w, "proxy header: read failed");
		return;
	}
	admit(w, &h);
}

static void
on_timeout(struct pbx_loop *loop, struct pbx_timer *t)
{
	(void)loop;
	refuse(t->data, "proxy header: not in time");
}

/* Wait for the header of a call from a trusted sender. */
static void
await_header(struct serve *srv, int fd, const struct pbx_addr *sender)
{
	struct proxy_wait *w = malloc(sizeof *w);

	if (w == NULL) {
		log_error("accept: %s", pbx_strerror(-ENOMEM));
		close(fd);
		return;
	}
	*w = (struct proxy_wait){
	    .io = {.fd = fd, .cb = on_readable, .data = w},
	    .timer = {.cb = on_timeout, .data = w},
	    .srv = srv,
	    .sender = *sender,
	    .next = srv->proxy_waits,
	};
	if (w->next != NULL)
		w->next->prev = w;
	srv->proxy_waits = w;
	srv->live++; /* a header on its way holds a place like a call */
	int r = pbx_io_start(srv->loop, &w->io, PBX_READABLE);
	if (r == 0)
		r = pbx_timer_start(
		    srv->loop, &w->timer, srv->opts->proxy_timeout_ms);
	if (r < 0)
		refuse(w, "proxy header: cannot wait for it");
	serve_pause_accept(srv, srv->live >= srv->limit);
}

void
serve_proxy_take(struct serve *srv, int fd, const struct pbx_addr *remote)
{
	const struct serve_opts *o = srv->opts;

	if (serve_rules_match(o->proxy_from, remote) != NULL) {
		await_header(srv, fd, remote);
		return;
	}
	/* Not from a proxy we trust: its header would be a lie. */
	if (o->proxy_required) {
		if (serve_emitting()) {
			struct pbx_addr local;
			serve_local_of(srv, fd, &local);
			serve_emit_reject(remote, NULL, &local,
			    "proxy header: not from a trusted proxy", 0);
		}
		close(fd);
		return;
	}
	if (serve_door_admit(srv, fd, remote, NULL) == SERVE_DOOR_DENIED) {
		close(fd);
		return;
	}
	srv->take(srv, fd, remote);
}

void
serve_proxy_abort(struct serve *srv)
{
	while (srv->proxy_waits != NULL) {
		struct proxy_wait *w = srv->proxy_waits;
		int fd = w->io.fd;
		unlink_wait(w);
		close(fd);
		free(w);
	}
}
