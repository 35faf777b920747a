/* SPDX-License-Identifier: MIT */
/*
 * stream.c: a connection on the loop with completion-style I/O, over a
 * transport table; and the plain transport. How bytes move, in one file.
 */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

enum {
	F_READING = 1 << 0,
	F_EOF = 1 << 1,         /* the read side has ended */
	F_SHUT_WANTED = 1 << 2, /* shut the write side once the queue is out */
	F_SHUT_DONE = 1 << 3,
	F_CLOSING = 1 << 4,
	F_FED = 1 << 5,        /* a delivery is queued on the loop */
	F_WFAILED = 1 << 6,    /* a write failed: the write side is dead */
	F_UNPOLLABLE = 1 << 7, /* epoll refuses the fd: always ready */
	F_NOTSOCK = 1 << 8,    /* plain transport: write(2), not send(2) */
	F_POLL_R = 1 << 9,     /* pbx__stream_poll: readiness to ops->ready */
	F_POLL_W = 1 << 10,
};

/* What a fed delivery asks on_io to try (beyond PBX_* readiness bits). */
enum {
	TRY_READ = 1 << 8,
	TRY_WRITE = 1 << 9,
	CLOSED = 1 << 10,
};

/* ---- the plain transport ---- */

static ssize_t
plain_read(struct pbx_stream *s, void *buf, size_t len, unsigned *wait)
{
	*wait = PBX_READABLE;
	return pbx_read_some(s->io.fd, buf, len);
}

static ssize_t
plain_write(struct pbx_stream *s, const void *buf, size_t len, unsigned *wait)
{
	*wait = PBX_WRITABLE;
	for (;;) {
		ssize_t n;
		/* MSG_NOSIGNAL: a vanished peer is an error, not a death. A
		 * pipe or terminal says ENOTSOCK once, then gets write(2). */
		if (s->flags & F_NOTSOCK)
			n = write(s->io.fd, buf, len);
		else
			n = send(s->io.fd, buf, len, MSG_NOSIGNAL);
		if (n >= 0)
			return n;
		if (errno == ENOTSOCK && !(s->flags & F_NOTSOCK)) {
			s->flags |= F_NOTSOCK;
			continue;
		}
		if (errno != EINTR)
			return -errno;
	}
}

static int
plain_shutdown(struct pbx_stream *s, unsigned *wait)
{
	*wait = PBX_WRITABLE;
	if (s->flags & F_NOTSOCK)
		return 0; /* a pipe or terminal has no half-close */
	if (shutdown(s->io.fd, SHUT_WR) == 0)
		return 0;
	/* A peer that already left, or an fd that is not a socket. */
	if (errno == ENOTCONN || errno == ENOTSOCK)
		return 0;
	return -errno;
}

static void
plain_close(struct pbx_stream *s)
{
	close(s->io.fd);
}

const struct pbx_transport pbx_transport_plain = {
    .name = "plain",
    .read = plain_read,
    .write = plain_write,
    .shutdown = plain_shutdown,
    .close = plain_close,
    .has_buffered = NULL,
    .plain = true,
};

/* ---- the stream ---- */

static void on_io(struct pbx_loop *loop, struct pbx_io *w, unsigned events);

void
pbx_stream_init(struct pbx_stream *s, struct pbx_loop *loop, int fd,
    const struct pbx_transport *tr, const struct pbx_stream_ops *ops)
{
	*s = (struct pbx_stream){
	    .io = {.fd = fd, .cb = on_io, .data = s},
	    .loop = loop,
	    .tr = tr != NULL ? tr : &pbx_transport_plain,
	    .ops = ops,
	    .rwait = PBX_READABLE,
	    .wwait = PBX_WRITABLE,
	};
}

/* Ask the loop to call on_io before it next waits (at most once). */
static void
feed(struct pbx_stream *s, unsigned what)
{
	if ((s->flags & (F_FED | F_CLOSING)) != 0)
		return;
	if (pbx_io_feed(s->loop, &s->io, what) == 0)
		s->flags |= F_FED;
}

static bool
write_pending(const struct pbx_stream *s)
{
	if (s->flags & F_WFAILED)
		return false;
	return s->wq != NULL ||
	       (s->flags & (F_SHUT_WANTED | F_SHUT_DONE)) == F_SHUT_WANTED;
}

/* Watch exactly what the reads and writes in progress wait for. */
static int
update(struct pbx_stream *s)
{
	unsigned want = 0;

	if (s->flags & (F_CLOSING | F_UNPOLLABLE))
		return 0;
	if (s->flags & F_READING)
		want |= s->rwait;
	if (write_pending(s))
		want |= s->wwait;
	if (s->flags & F_POLL_R)
		want |= PBX_READABLE;
	if (s->flags & F_POLL_W)
		want |= PBX_WRITABLE;
	if (want == (s->io.events & (PBX_READABLE | PBX_WRITABLE)))
		return 0;
	int r = pbx_io_start(s->loop, &s->io, want);
	if (want == 0)
		s->flags &=
		    (uint16_t)~F_FED; /* stopping dropped the delivery */
	if (r == -EPERM) {
		/* A regular file or the like: always ready, so the loop's
		 * before-wait delivery stands in for readiness. */
		s->flags |= F_UNPOLLABLE;
		feed(s, TRY_READ | TRY_WRITE);
		return 0;
	}
	return r;
}

static void
write_done(struct pbx_stream *s, struct pbx_write *w, int status)
{
	if (w->cb != NULL)
		w->cb(s, w, status);
	if (w->owned)
		free(w);
}

/* Take the first write off the queue. */
static struct pbx_write *
dequeue(struct pbx_stream *s)
{
	struct pbx_write *first = s->wq->next;

	if (first == s->wq)
		s->wq = NULL;
	else
		s->wq->next = first->next;
	s->queued -= (uint32_t)(first->len - first->off);
	return first;
}

static void
fail_writes(struct pbx_stream *s, int err)
{
	s->flags |= F_WFAILED;
	while (s->wq != NULL && !(s->flags & F_CLOSING))
		write_done(s, dequeue(s), err);
	if ((s->flags & (F_SHUT_WANTED | F_SHUT_DONE | F_CLOSING)) ==
	    F_SHUT_WANTED) {
		s->flags |= F_SHUT_DONE;
		if (s->ops->shutdown != NULL)
			s->ops->shutdown(s, err);
	}
}

static void
do_shutdown(struct pbx_stream *s)
{
	unsigned wait = PBX_WRITABLE;
	int r = s->tr->shutdown(s, &wait);

	if (r == -EAGAIN) {
		s->wwait = (uint8_t)wait;
		return;
	}
	s->flags |= F_SHUT_DONE;
	if (s->ops->shutdown != NULL)
		s->ops->shutdown(s, r);
}

/* Write the queue in order as far as the transport takes it. */
static void
flush(struct pbx_stream *s)
{
	while (s->wq != NULL && !(s->flags & F_CLOSING)) {
		struct pbx_write *w = s->wq->next;
		while (w->off < w->len) {
			unsigned wait = PBX_WRITABLE;
			ssize_t n = s->tr->write(
			    s, w->buf + w->off, w->len - w->off, &wait);
			if (n == -EAGAIN) {
				s->wwait = (uint8_t)wait;
				return;
			}
			if (n < 0) {
				fail_writes(s, (int)n);
				return;
			}
			w->off += (size_t)n;
			s->queued -= (uint32_t)n;
			s->bytes_out += (uint64_t)n;
		}
		s->wwait = PBX_WRITABLE;
		write_done(s, dequeue(s), 0);
	}
	if ((s->flags & (F_SHUT_WANTED | F_SHUT_DONE | F_CLOSING |
			    F_WFAILED)) == F_SHUT_WANTED)
		do_shutdown(s);
}

/* One read, handed to the reader. */
static void
do_read(struct pbx_stream *s)
{
	char *buf = NULL;
	size_t len = 0;
	unsigned wait = PBX_READABLE;

	s->ops->alloc(s, &buf, &len);
	ssize_t n = s->tr->read(s, buf, len, &wait);
	if (n == -EAGAIN) {
		s->rwait = (uint8_t)wait;
		return;
	}
	s->rwait = PBX_READABLE;
	if (n > 0)
		s->bytes_in += (uint64_t)n;
	else
		s->flags &= (uint16_t)~F_READING;
	if (n == 0)
		s->flags |= F_EOF;
	s->ops->read(s, n, buf);
	if ((s->flags & (F_READING | F_CLOSING)) != F_READING)
		return;
	/* Bytes the fd will not signal: held by the transport, or a file. */
	if ((s->flags & F_UNPOLLABLE) ||
	    (s->tr->has_buffered != NULL && s->tr->has_buffered(s)))
		feed(s, TRY_READ);
}

static void
finish_close(struct pbx_stream *s)
{
	while (s->wq != NULL)
		write_done(s, dequeue(s), -ECANCELED);
	if (s->ops->close != NULL)
		s->ops->close(s, 0);
}

static void
on_io(struct pbx_loop *loop, struct pbx_io *w, unsigned events)
{
	struct pbx_stream *s = w->data;
	unsigned hup = events & PBX_HANGUP;

	(void)loop;
	s->flags &= (uint16_t)~F_FED;
	if (s->flags & F_CLOSING) {
		if (events & CLOSED)
			finish_close(s);
		return;
	}
	if (write_pending(s) && (events & (s->wwait | hup | TRY_WRITE)) != 0)
		flush(s);
	if ((s->flags & (F_READING | F_CLOSING)) == F_READING &&
	    (events & (s->rwait | hup | TRY_READ)) != 0)
		do_read(s);
	/* Readiness itself, for a mover that bypasses the transport; fed
	 * deliveries are not readiness. */
	unsigned ready = events & (PBX_READABLE | PBX_WRITABLE | PBX_HANGUP);
	if ((s->flags & (F_POLL_R | F_POLL_W)) != 0 &&
	    !(s->flags & F_CLOSING) && ready != 0)
		s->ops->ready(s, ready);
	if (s->flags & F_CLOSING)
		return;
	if ((s->flags & F_UNPOLLABLE) && write_pending(s))
		feed(s, TRY_WRITE);
	int r = update(s);
	if (r < 0 && (s->flags & F_READING)) {
		s->flags &= (uint16_t)~F_READING;
		s->ops->read(s, r, NULL);
	} else if (r < 0) {
		fail_writes(s, r);
	}
}

int
pbx__stream_poll(struct pbx_stream *s, unsigned events)
{
	if (s->flags & F_CLOSING)
		return -EBADF;
	s->flags &= (uint16_t) ~(F_POLL_R | F_POLL_W);
	if (events & PBX_READABLE)
		s->flags |= F_POLL_R;
	if (events & PBX_WRITABLE)
		s->flags |= F_POLL_W;
	return update(s);
}

int
pbx_stream_read_start(struct pbx_stream *s)
{
	if (s->flags & F_CLOSING)
		return -EBADF;
	s->flags |= F_READING;
	if ((s->flags & F_UNPOLLABLE) ||
	    (s->tr->has_buffered != NULL && s->tr->has_buffered(s)))
		feed(s, TRY_READ);
	int r = update(s);
	if (r < 0)
		s->flags &= (uint16_t)~F_READING;
	return r;
}

void
pbx_stream_read_stop(struct pbx_stream *s)
{
	s->flags &= (uint16_t)~F_READING;
	update(s);
}

bool
pbx_stream_is_reading(const struct pbx_stream *s)
{
	return (s->flags & F_READING) != 0;
}

ssize_t
pbx_stream_try_read(struct pbx_stream *s, void *buf, size_t len)
{
	unsigned wait;

	if (s->flags & F_CLOSING)
		return -EBADF;
	ssize_t n = s->tr->read(s, buf, len, &wait);
	if (n > 0)
		s->bytes_in += (uint64_t)n;
	else if (n == 0)
		s->flags |= F_EOF;
	return n;
}

ssize_t
pbx_stream_try_write(struct pbx_stream *s, const void *buf, size_t len)
{
	unsigned wait;

	if (s->flags & (F_CLOSING | F_WFAILED | F_SHUT_WANTED))
		return -EPIPE;
	if (s->wq != NULL)
		return -EAGAIN;
	ssize_t n = s->tr->write(s, buf, len, &wait);
	if (n > 0)
		s->bytes_out += (uint64_t)n;
	return n;
}

int
pbx_stream_write(struct pbx_stream *s, struct pbx_write *w)
{
	if (s->flags & (F_CLOSING | F_WFAILED | F_SHUT_WANTED))
		return -EPIPE;
	if (w->len > UINT32_MAX - s->queued)
		return -ENOBUFS;
	w->off = 0;
	if (s->wq == NULL) {
		w->next = w;
		feed(s, TRY_WRITE); /* written from the loop, in order */
	} else {
		w->next = s->wq->next;
		s->wq->next = w;
	}
	s->wq = w;
	s->queued += (uint32_t)w->len;
	return 0;
}

int
pbx_stream_write_copy(
    struct pbx_stream *s, const void *buf, size_t len, pbx_write_cb cb)
{
	struct pbx_write *w = malloc(sizeof *w + len);

	if (w == NULL)
		return -ENOMEM;
	memcpy(w + 1, buf, len);
	*w = (struct pbx_write){
	    .buf = (const char *)(w + 1), .len = len, .cb = cb, .owned = true};
	int r = pbx_stream_write(s, w);
	if (r < 0)
		free(w);
	return r;
}

size_t
pbx_stream_queued(const struct pbx_stream *s)
{
	return s->queued;
}

int
pbx_stream_shutdown(struct pbx_stream *s)
{
	if (s->flags & F_CLOSING)
		return -EBADF;
	if (s->flags & F_WFAILED)
		return -EPIPE;
	if (s->flags & F_SHUT_WANTED)
		return 0;
	s->flags |= F_SHUT_WANTED;
	if (s->wq == NULL)
		feed(s, TRY_WRITE);
	return 0;
}

void
pbx_stream_close(struct pbx_stream *s)
{
	if (s->flags & F_CLOSING)
		return;
	/* Stopping drops deliveries already fed; the close is fed last. */
	pbx_io_stop(s->loop, &s->io);
	s->flags = (uint16_t)((s->flags & ~(F_READING | F_FED)) | F_CLOSING);
	s->tr->close(s);
	s->io.fd = -1;
	if (pbx_io_feed(s->loop, &s->io, CLOSED) < 0)
		finish_close(s); /* out of memory: say it now, not never */
}

int
pbx_stream_release_fd(struct pbx_stream *s)
{
	if (!s->tr->plain || s->wq != NULL || (s->flags & F_CLOSING))
		return -EBUSY;
	pbx_io_stop(s->loop, &s->io);
	s->flags = F_CLOSING;
	int fd = s->io.fd;
	s->io.fd = -1;
	return fd;
}
