/* SPDX-License-Identifier: MIT */
/*
 * dial.c: the dialer (a connect over a list of addresses, driven by the
 * loop) and pbx_dial, its blocking wrapper.
 */
#include "internal.h"

#include <errno.h>
#include <unistd.h>

static void on_io(struct pbx_loop *loop, struct pbx_io *w, unsigned events);
static void on_timer(struct pbx_loop *loop, struct pbx_timer *t);

int
pbx_dial_finish(int fd)
{
	int err = 0;
	socklen_t len = sizeof err;

	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		return -errno;
	return -err;
}

/* "connect(fd, ADDR)", with " in progress" or " failed: reason". */
static void
trace_connect(const struct pbx_dialer *d, int r)
{
	char text[PBX_ADDR_STRLEN];
	const char *how = "", *why = "";

	if (d->trace == NULL)
		return;
	if (r == -EINPROGRESS) {
		how = " in progress";
	} else if (r < 0) {
		how = " failed: ";
		why = pbx_strerror(r);
	}
	pbx_addr_format(d->tried, text, sizeof text);
	pbx__trace(d->trace, d->trace_arg, "connect(%d, %s)%s%s", d->io.fd,
	    text, how, why);
}

/* Give up on the socket in hand: the attempt failed or was cancelled. */
static void
drop_socket(struct pbx_dialer *d)
{
	pbx_io_stop(d->loop, &d->io);
	pbx_timer_stop(d->loop, &d->timer);
	if (d->io.fd >= 0)
		close(d->io.fd);
	d->io.fd = -1;
}

static int
fail(struct pbx_dialer *d, int step, int err)
{
	d->failed_step = step;
	drop_socket(d);
	return err;
}

/* Wait for the connect under way: -EINPROGRESS, or -errno. */
static int
watch(struct pbx_dialer *d)
{
	int r = pbx_io_start(d->loop, &d->io, PBX_WRITABLE);

	if (r == 0 && d->timeout_ms > 0)
		r = pbx_timer_start(
		    d->loop, &d->timer, (uint64_t)d->timeout_ms);
	return r < 0 ? r : -EINPROGRESS;
}

/*
 * socket, bind the source, connect to a. Returns the fd (connected, or
 * under way with PBX_DIALER_EARLY), -EINPROGRESS while the connect is
 * watched, or -errno with the socket closed and failed_step set.
 */
static int
attempt(struct pbx_dialer *d, const struct pbx_addr *a)
{
	int r;

	d->tried = a;
	d->io.fd = pbx__socket(
	    pbx_addr_family(a), SOCK_NONBLOCK, d->trace, d->trace_arg);
	if (d->io.fd < 0)
		return fail(d, PBX_DIAL_SOCKET, d->io.fd);
	if (d->source != NULL) {
		r = pbx__bind(d->io.fd, d->source, d->trace, d->trace_arg);
		if (r < 0)
			return fail(d, PBX_DIAL_BIND, r);
	}
	r = connect(d->io.fd, &a->u.sa, a->len) < 0 ? -errno : 0;
	if (r == -EINPROGRESS && (d->flags & PBX_DIALER_EARLY) == 0) {
		r = watch(d);
		if (r == -EINPROGRESS)
			return r;
	}
	trace_connect(d, r);
	if (r < 0 && r != -EINPROGRESS)
		return fail(d, PBX_DIAL_CONNECT, r);
	return d->io.fd;
}

/*
 * Try the addresses from d->next on, skipping those of another family
 * than the source. Returns -EINPROGRESS while a connect is watched, else
 * the outcome: an fd, or the last error (last when none was tried).
 */
static int
dial_next(struct pbx_dialer *d, int last)
{
	int r = last;

	while (d->next < d->naddrs) {
		const struct pbx_addr *a = &d->addrs[d->next++];
		if (d->source != NULL &&
		    pbx_addr_family(d->source) != pbx_addr_family(a))
			continue;
		r = attempt(d, a);
		/* A source that cannot be bound fails the same way for all. */
		if (r >= 0 || r == -EINPROGRESS ||
		    d->failed_step != PBX_DIAL_CONNECT)
			return r;
	}
	return r;
}

/* The dialer is idle from here on: cb may start it again or free it. */
static void
deliver(struct pbx_dialer *d, int result)
{
	if (result >= 0)
		d->failed_step = 0;
	d->io.fd = -1;
	d->loop = NULL;
	d->cb(d, result);
}

static void
on_io(struct pbx_loop *loop, struct pbx_io *w, unsigned events)
{
	struct pbx_dialer *d = w->data;

	(void)events;
	if (w->events == 0) {
		/* Fed: the completion of an outcome known in start. */
		deliver(d, d->result);
		return;
	}
	int r = pbx_dial_finish(w->fd);
	trace_connect(d, r);
	if (r == 0) {
		int fd = w->fd;
		pbx_io_stop(loop, w);
		pbx_timer_stop(loop, &d->timer);
		deliver(d, fd);
		return;
	}
	fail(d, PBX_DIAL_CONNECT, r);
	r = dial_next(d, r);
	if (r != -EINPROGRESS)
		deliver(d, r);
}

static void
on_timer(struct pbx_loop *loop, struct pbx_timer *t)
{
	struct pbx_dialer *d = t->data;

	(void)loop;
	trace_connect(d, -ETIMEDOUT);
	fail(d, PBX_DIAL_CONNECT, -ETIMEDOUT);
	int r = dial_next(d, -ETIMEDOUT);
	if (r != -EINPROGRESS)
		deliver(d, r);
}

int
pbx_dialer_start(struct pbx_loop *loop, struct pbx_dialer *d)
{
	d->loop = loop;
	d->io = (struct pbx_io){.fd = -1, .cb = on_io, .data = d};
	d->timer = (struct pbx_timer){.cb = on_timer, .data = d};
	d->next = 0;
	d->tried = NULL;
	d->failed_step = 0;
	int r = dial_next(d, -EAFNOSUPPORT);
	if (r == -EINPROGRESS)
		return 0;
	/*
	 * Known at once (connected, refused, no address of the source's
	 * family): still reported from the loop, so that a caller never
	 * meets its callback inside its own call. A fed event, not a 0 ms
	 * timer: no heap to keep in order, once per call in pbx bench.
	 */
	d->result = r;
	int e = pbx_io_feed(loop, &d->io, 0);
	if (e < 0) {
		drop_socket(d);
		d->loop = NULL;
	}
	return e;
}

void
pbx_dialer_cancel(struct pbx_dialer *d)
{
	if (d->loop == NULL)
		return;
	drop_socket(d);
	d->loop = NULL;
}

static void
dial_done(struct pbx_dialer *d, int fd)
{
	*(int *)d->data = fd;
}

/* Tell the caller of pbx_dial which step failed. */
static int
dial_fail(const struct pbx_dial_opts *o, int step, int err)
{
	if (o->failed_step != NULL)
		*o->failed_step = step;
	return err;
}

/*
 * One dialer on a private loop until its callback. A failure of the loop
 * itself (no memory for the completion, epoll_wait) counts as the connect's.
 */
static int
dial_wait(struct pbx_loop *loop, struct pbx_dialer *d)
{
	int fd = -EINPROGRESS; /* never an outcome: the dialer never says it */

	d->data = &fd;
	int r = pbx_dialer_start(loop, d);
	if (r == 0)
		r = pbx_loop_run(loop);
	if (fd == -EINPROGRESS) {
		pbx_dialer_cancel(d);
		d->failed_step = PBX_DIAL_CONNECT;
		fd = r < 0 ? r : -EIO;
	}
	return fd;
}

int
pbx_dial(const struct pbx_addr *addrs, size_t n, const struct pbx_dial_opts *o)
{
	static const struct pbx_dial_opts defaults;
	struct pbx_loop *loop;

	if (o == NULL)
		o = &defaults;
	/* Out of fds or memory here is out of them for a socket too. */
	int r = pbx_loop_new(&loop);
	if (r < 0)
		return dial_fail(o, PBX_DIAL_SOCKET, r);
	struct pbx_dialer d = {.addrs = addrs,
	    .naddrs = n,
	    .source = o->source,
	    .timeout_ms = o->timeout_ms,
	    .trace = o->trace,
	    .trace_arg = o->trace_arg,
	    .cb = dial_done};
	int fd = dial_wait(loop, &d);
	pbx_loop_free(loop);
	if (o->tried != NULL && d.tried != NULL)
		*o->tried = *d.tried;
	if (fd < 0)
		return dial_fail(o, d.failed_step, fd);
	r = pbx_set_nonblock(fd, false);
	if (r < 0) {
		close(fd);
		return dial_fail(o, PBX_DIAL_CONNECT, r);
	}
	return fd;
}
