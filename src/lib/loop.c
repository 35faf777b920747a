/* SPDX-License-Identifier: MIT */
/* loop.c: one epoll loop for fds, timers, signals (signalfd), children (pidfd).
 */
#include "internal.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define LOOP_BATCH 256

struct pbx_loop {
	int epfd;
	bool stopping;
	uint64_t now;
	size_t active; /* started fd, signal and child watchers */

	/* Timers: a binary min-heap on due_ms; t->slot is index + 1. */
	struct pbx_timer **heap; /* owned array, borrowed timers */
	size_t nheap, heap_cap;
	uint32_t timer_pass; /* counts run_timers calls */

	/* Signals: one signalfd for every watched signal. */
	int sigfd;
	sigset_t sigmask;
	struct pbx_signal *signals; /* borrowed list */
	unsigned signal_round;
	struct pbx_io sigio;

	/* The batch being dispatched, so a stopped watcher is not called. */
	struct epoll_event *events; /* pbx_loop_run's batch, on its stack */
	int cur, nready;

	/* Fed events (pbx_io_feed): delivered before the next wait. */
	struct fed_event *fed; /* owned array */
	size_t nfed, fed_cap;
};

struct fed_event {
	struct pbx_io *w; /* borrowed; NULL once dropped */
	unsigned events;
};

int
pbx_loop_new(struct pbx_loop **out)
{
	struct pbx_loop *loop = calloc(1, sizeof *loop);

	if (loop == NULL)
		return -ENOMEM;
	loop->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (loop->epfd < 0) {
		int err = -errno;
		free(loop);
		return err;
	}
	loop->sigfd = -1;
	sigemptyset(&loop->sigmask);
	loop->now = pbx__now_ms();
	*out = loop;
	return 0;
}

void
pbx_loop_free(struct pbx_loop *loop)
{
	if (loop == NULL)
		return;
	close(loop->epfd);
	if (loop->sigfd >= 0)
		close(loop->sigfd);
	free(loop->heap);
	free(loop->fed);
	free(loop);
}

void
pbx_loop_stop(struct pbx_loop *loop)
{
	loop->stopping = true;
}

uint64_t
pbx_loop_now(const struct pbx_loop *loop)
{
	return loop->now;
}

/* ---- fd watchers ---- */

static uint32_t
to_epoll(unsigned events)
{
	return (events & PBX_READABLE ? EPOLLIN : 0) |
	       (events & PBX_WRITABLE ? EPOLLOUT : 0) |
	       (events & PBX_PEER_CLOSED ? EPOLLRDHUP : 0);
}

static int
io_update(struct pbx_loop *loop, struct pbx_io *w, unsigned events)
{
	struct epoll_event ev = {.events = to_epoll(events), .data.ptr = w};
	int op = w->events == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;

	if (epoll_ctl(loop->epfd, op, w->fd, &ev) < 0)
		return -errno;
	w->events = events;
	return 0;
}

int
pbx_io_start(struct pbx_loop *loop, struct pbx_io *w, unsigned events)
{
	events &= PBX_READABLE | PBX_WRITABLE | PBX_PEER_CLOSED;
	if ((events & (PBX_READABLE | PBX_WRITABLE)) == 0) {
		pbx_io_stop(loop, w);
		return 0;
	}
	bool was_active = w->events != 0;
	int r = io_update(loop, w, events);
	if (r == 0 && !was_active)
		loop->active++;
	return r;
}

/* Drop what is fed to w: it is stopping and may be freed. */
static void
unfeed(struct pbx_loop *loop, const struct pbx_io *w)
{
	for (size_t i = 0; i < loop->nfed; i++)
		if (loop->fed[i].w == w)
			loop->fed[i].w = NULL;
}

void
pbx_io_stop(struct pbx_loop *loop, struct pbx_io *w)
{
	if (w->events != 0)
		epoll_ctl(loop->epfd, EPOLL_CTL_DEL, w->fd, NULL);
	pbx_io_forget(loop, w);
}

void
pbx_io_forget(struct pbx_loop *loop, struct pbx_io *w)
{
	if (loop->nfed > 0)
		unfeed(loop, w);
	if (w->events == 0)
		return;
	w->events = 0;
	loop->active--;
	/* An event for w later in this batch must not reach freed memory. */
	for (int i = loop->cur + 1; i < loop->nready; i++)
		if (loop->events[i].data.ptr == w)
			loop->events[i].data.ptr = NULL;
}

int
pbx_io_feed(struct pbx_loop *loop, struct pbx_io *w, unsigned events)
{
	if (loop->nfed == loop->fed_cap) {
		size_t cap = loop->fed_cap ? loop->fed_cap * 2 : 64;
		struct fed_event *f = realloc(loop->fed, cap * sizeof *f);
		if (f == NULL)
			return -ENOMEM;
		loop->fed = f;
		loop->fed_cap = cap;
	}
	loop->fed[loop->nfed++] = (struct fed_event){.w = w, .events = events};
	return 0;
}

/*
 * Deliver what was fed before this pass; what the callbacks feed now
 * waits for the next pass, after epoll has been asked (with a zero
 * timeout), so a watcher that feeds itself cannot starve the others.
 */
static void
run_fed(struct pbx_loop *loop)
{
	size_t n = loop->nfed;

	for (size_t i = 0; i < n && !loop->stopping; i++) {
		struct fed_event f = loop->fed[i];
		if (f.w != NULL) {
			loop->fed[i].w = NULL;
			f.w->cb(loop, f.w, f.events);
		}
	}
	/* Keep what was fed meanwhile (or not delivered after a stop). */
	size_t kept = 0;
	for (size_t i = 0; i < loop->nfed; i++)
		if (loop->fed[i].w != NULL)
			loop->fed[kept++] = loop->fed[i];
	loop->nfed = kept;
}

/* ---- timers ---- */

static bool
timer_before(const struct pbx_timer *a, const struct pbx_timer *b)
{
	return a->due_ms < b->due_ms;
}

static void
heap_set(struct pbx_loop *loop, size_t i, struct pbx_timer *t)
{
	loop->heap[i] = t;
	t->slot = (uint32_t)(i + 1);
}

static void
heap_up(struct pbx_loop *loop, size_t i)
{
	struct pbx_timer *t = loop->heap[i];

	while (i > 0 && timer_before(t, loop->heap[(i - 1) / 2])) {
		heap_set(loop, i, loop->heap[(i - 1) / 2]);
		i = (i - 1) / 2;
	}
	heap_set(loop, i, t);
}

static void
heap_down(struct pbx_loop *loop, size_t i)
{
	struct pbx_timer *t = loop->heap[i];

	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= loop->nheap)
			break;
		if (c + 1 < loop->nheap &&
		    timer_before(loop->heap[c + 1], loop->heap[c]))
			c++;
		if (!timer_before(loop->heap[c], t))
			break;
		heap_set(loop, i, loop->heap[c]);
		i = c;
	}
	heap_set(loop, i, t);
}

void
pbx_timer_stop(struct pbx_loop *loop, struct pbx_timer *t)
{
	if (t->slot == 0)
		return;
	size_t i = t->slot - 1;
	struct pbx_timer *last = loop->heap[--loop->nheap];
	t->slot = 0;
	if (last == t)
		return;
	heap_set(loop, i, last);
	heap_up(loop, i);
	heap_down(loop, last->slot - 1);
}

int
pbx_timer_start(struct pbx_loop *loop, struct pbx_timer *t, uint64_t ms)
{
	pbx_timer_stop(loop, t);
	if (loop->nheap == loop->heap_cap) {
		size_t cap = loop->heap_cap ? loop->heap_cap * 2 : 64;
		struct pbx_timer **h = realloc(loop->heap, cap * sizeof *h);
		if (h == NULL)
			return -ENOMEM;
		loop->heap = h;
		loop->heap_cap = cap;
	}
	t->due_ms = loop->now + ms;
	t->pass = loop->timer_pass;
	heap_set(loop, loop->nheap++, t);
	heap_up(loop, loop->nheap - 1);
	return 0;
}

static void
run_timers(struct pbx_loop *loop)
{
	/*
	 * A timer (re)started by a callback of this pass waits for the next
	 * one, after epoll has been asked: a 0 ms timer that restarts
	 * itself must not keep the loop here forever.
	 */
	loop->timer_pass++;
	while (loop->nheap > 0 && !loop->stopping) {
		struct pbx_timer *t = loop->heap[0];
		if (t->due_ms > loop->now || t->pass == loop->timer_pass)
			break;
		pbx_timer_stop(loop, t);
		t->cb(loop, t);
	}
}

/* ---- signals ---- */

/*
 * A callback may stop (and free) any signal watcher, so the list is
 * walked again from its head after every call; a round number keeps each
 * watcher to one call per delivered signal.
 */
static void
deliver_signal(struct pbx_loop *loop, int signo)
{
	unsigned round = ++loop->signal_round;

	for (;;) {
		struct pbx_signal *s = loop->signals;
		while (s != NULL && (s->signo != signo || s->round == round))
			s = s->next;
		if (s == NULL)
			return;
		s->round = round;
		s->cb(loop, s);
	}
}

static void
on_signalfd(struct pbx_loop *loop, struct pbx_io *w, unsigned events)
{
	struct signalfd_siginfo si[8];

	(void)w;
	(void)events;
	/*
	 * One read takes every pending signal that fits; a short read means
	 * none is left, so no further read just to hear EAGAIN (epoll is
	 * level-triggered: a signal that comes later wakes the loop again).
	 */
	for (;;) {
		ssize_t n = read(loop->sigfd, si, sizeof si);
		if (n <= 0)
			return;
		size_t count = (size_t)n / sizeof si[0];
		for (size_t i = 0; i < count; i++)
			deliver_signal(loop, (int)si[i].ssi_signo);
		if (count < sizeof si / sizeof si[0])
			return;
	}
}

static int
update_sigfd(struct pbx_loop *loop)
{
	int fd =
	    signalfd(loop->sigfd, &loop->sigmask, SFD_NONBLOCK | SFD_CLOEXEC);

	if (fd < 0)
		return -errno;
	if (loop->sigfd < 0) {
		loop->sigfd = fd;
		loop->sigio = (struct pbx_io){.fd = fd, .cb = on_signalfd};
	}
	if (loop->sigio.events == 0)
		return pbx_io_start(loop, &loop->sigio, PBX_READABLE);
	return 0;
}

int
pbx_signal_start(struct pbx_loop *loop, struct pbx_signal *s)
{
	sigset_t one;

	sigemptyset(&one);
	sigaddset(&one, s->signo);
	if (sigprocmask(SIG_BLOCK, &one, NULL) < 0)
		return -errno;
	sigaddset(&loop->sigmask, s->signo);
	int r = update_sigfd(loop);
	if (r < 0)
		return r;
	s->next = loop->signals;
	loop->signals = s;
	return 0;
}

void
pbx_signal_stop(struct pbx_loop *loop, struct pbx_signal *s)
{
	struct pbx_signal **pp = &loop->signals;
	bool still_watched = false;

	while (*pp != NULL && *pp != s)
		pp = &(*pp)->next;
	if (*pp == NULL)
		return;
	*pp = s->next;
	for (struct pbx_signal *o = loop->signals; o != NULL; o = o->next)
		still_watched |= o->signo == s->signo;
	if (still_watched)
		return;
	sigset_t one;
	sigemptyset(&one);
	sigaddset(&one, s->signo);
	sigdelset(&loop->sigmask, s->signo);
	update_sigfd(loop);
	if (loop->signals == NULL)
		pbx_io_stop(loop, &loop->sigio);
	sigprocmask(SIG_UNBLOCK, &one, NULL);
}

/* ---- children ---- */

static void
on_pidfd(struct pbx_loop *loop, struct pbx_io *w, unsigned events)
{
	struct pbx_child *c = w->data;
	int status = 0;

	(void)events;
	pid_t r = waitpid(c->pid, &status, WNOHANG);
	if (r == 0)
		return; /* spurious: not exited yet */
	pbx_child_stop(loop, c);
	c->cb(loop, c, status);
}

int
pbx_child_start(struct pbx_loop *loop, struct pbx_child *c)
{
	int fd = (int)syscall(SYS_pidfd_open, c->pid, 0);

	if (fd < 0)
		return -errno;
	c->io = (struct pbx_io){.fd = fd, .cb = on_pidfd, .data = c};
	int r = pbx_io_start(loop, &c->io, PBX_READABLE);
	if (r < 0) {
		close(fd);
		c->io.fd = -1;
	}
	return r;
}

void
pbx_child_stop(struct pbx_loop *loop, struct pbx_child *c)
{
	if (c->io.events == 0)
		return;
	pbx_io_forget(loop, &c->io); /* the pidfd is ours alone */
	close(c->io.fd);

	c->io.fd = -1;
}

/* ---- running ---- */

static int
next_timeout(const struct pbx_loop *loop)
{
	if (loop->nfed > 0)
		return 0; /* fed meanwhile: look at the fds, then deliver */
	if (loop->nheap == 0)
		return -1;
	uint64_t due = loop->heap[0]->due_ms;
	if (due <= loop->now)
		return 0;
	uint64_t wait = due - loop->now;
	return wait > INT32_MAX ? INT32_MAX : (int)wait;
}

static void
dispatch(struct pbx_loop *loop)
{
	for (loop->cur = 0; loop->cur < loop->nready; loop->cur++) {
		struct epoll_event *e = &loop->events[loop->cur];
		struct pbx_io *w = e->data.ptr;
		if (w == NULL || w->events == 0)
			continue;
		unsigned ev = (e->events & EPOLLIN ? PBX_READABLE : 0) |
			      (e->events & EPOLLOUT ? PBX_WRITABLE : 0) |
			      (e->events & EPOLLRDHUP ? PBX_PEER_CLOSED : 0);
		/* Let the callback find out by reading or writing. */
		if (e->events & (EPOLLERR | EPOLLHUP))
			ev |= w->events | PBX_HANGUP;
		w->cb(loop, w, ev);
		if (loop->stopping)
			break;
	}
	loop->cur = loop->nready = 0;
}

int
pbx_loop_run(struct pbx_loop *loop)
{
	/*
	 * The batch lives on the stack, among pages a running loop writes
	 * anyway: after a fork, every page the parent writes costs a
	 * copy-on-write fault, and a server that forks per caller pays it on
	 * each one.
	 */
	struct epoll_event events[LOOP_BATCH];
	int r = 0;

	loop->events = events;
	for (;;) {
		run_fed(loop);
		if (loop->stopping ||
		    (loop->active == 0 && loop->nheap == 0 && loop->nfed == 0))
			break;
		/* The timeout is recomputed after EINTR, never reused stale. */
		int n = epoll_wait(
		    loop->epfd, events, LOOP_BATCH, next_timeout(loop));
		loop->now = pbx__now_ms();
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = -errno;
			break;
		}
		loop->nready = n;
		dispatch(loop);
		run_timers(loop);
	}
	loop->events = NULL;
	loop->cur = loop->nready = 0;
	loop->stopping = false; /* the next run starts afresh */
	return r;
}
