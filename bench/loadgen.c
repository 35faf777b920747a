/* SPDX-License-Identifier: MIT */
/*
 * loadgen.c: an independent load generator for greeting servers, written
 * for this suite to check `pbx bench` against (Debian has no tcpkali). It
 * shares no code with pbx. Each of -c slots places one call after
 * another: a non-blocking socket and connect, one epoll registration for
 * EPOLLIN|EPOLLRDHUP (the reply proves the connect worked, a refusal shows
 * up on read), reads until EOF (a short read that came with the FIN ends
 * it without another read), close. A call counts when its reply ended
 * with at least one byte; calls still in flight at the end do not.
 *
 * usage: loadgen [-c N] [-d SECONDS] HOST PORT
 * Prints one JSON line: connections, seconds, connections_per_s,
 * bytes_in, errors.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUF_SIZE 4096

struct slot {
	int fd;     /* -1: idle, to be started */
	size_t got; /* bytes of this reply */
};

struct gen {
	int ep;
	struct sockaddr_in to;
	struct slot *slots;
	unsigned idle; /* slots that failed to start, to retry */
	unsigned long calls, errors, bytes;
	char buf[BUF_SIZE];
};

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Place the next call on slot i; on failure it stays idle (fd -1). */
static void
start(struct gen *g, unsigned i)
{
	struct slot *s = &g->slots[i];
	struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.u32 = i};

	if (s->fd < 0)
		g->idle--;
	s->got = 0;
	s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s->fd < 0) {
		g->errors++;
		g->idle++;
		return;
	}
	if ((connect(s->fd, (struct sockaddr *)&g->to, sizeof g->to) < 0 &&
		errno != EINPROGRESS) ||
	    epoll_ctl(g->ep, EPOLL_CTL_ADD, s->fd, &ev) < 0) {
		g->errors++;
		g->idle++;
		close(s->fd);
		s->fd = -1;
	}
}

/* Read what is there; at EOF (or an error) end the call, start another. */
static void
on_ready(struct gen *g, unsigned i, uint32_t events)
{
	struct slot *s = &g->slots[i];

	for (;;) {
		ssize_t n = read(s->fd, g->buf, BUF_SIZE);
		if (n < 0 && errno == EAGAIN)
			return;
		if (n > 0) {
			s->got += (size_t)n;
			g->bytes += (size_t)n;
		}
		if (n > 0 && (n == BUF_SIZE || !(events & EPOLLRDHUP)))
			continue;
		if (n >= 0 && s->got > 0)
			g->calls++;
		else
			g->errors++;
		close(s->fd);
		s->fd = 0; /* busy: start() replaces it */
		start(g, i);
		return;
	}
}

int
main(int argc, char **argv)
{
	struct gen g = {.to = {.sin_family = AF_INET}};
	struct epoll_event out[256];
	unsigned conns = 50;
	double secs = 5;
	int c;

	while ((c = getopt(argc, argv, "c:d:")) != -1) {
		if (c == 'c')
			conns = (unsigned)strtoul(optarg, NULL, 10);
		else if (c == 'd')
			secs = strtod(optarg, NULL);
		else
			return 2;
	}
	if (argc - optind != 2 || conns == 0 ||
	    inet_pton(AF_INET, argv[optind], &g.to.sin_addr) != 1) {
		fprintf(
		    stderr, "usage: loadgen [-c N] [-d SECONDS] HOST PORT\n");
		return 2;
	}
	g.to.sin_port = htons((uint16_t)strtoul(argv[optind + 1], NULL, 10));
	g.ep = epoll_create1(EPOLL_CLOEXEC);
	g.slots = calloc(conns, sizeof *g.slots);
	if (g.ep < 0 || g.slots == NULL) {
		perror("loadgen");
		return 1;
	}
	double t0 = now_s(), end = t0 + secs, t;
	for (unsigned i = 0; i < conns; i++) {
		g.slots[i].fd = -1;
		g.idle++;
		start(&g, i);
	}
	while ((t = now_s()) < end) {
		int wait = g.idle > 0 ? 1 : 1 + (int)((end - t) * 1e3);
		int n = epoll_wait(g.ep, out, 256, wait);
		for (int k = 0; k < n; k++)
			on_ready(&g, out[k].data.u32, out[k].events);
		/* Slots that could not start (out of ports or fds) retry. */
		for (unsigned i = 0; g.idle > 0 && i < conns; i++)
			if (g.slots[i].fd < 0)
				start(&g, i);
	}
	t -= t0;
	printf("{\"connections\": %lu, \"seconds\": %.3f, "
	       "\"connections_per_s\": %.1f, \"bytes_in\": %lu, "
	       "\"errors\": %lu}\n",
	    g.calls, t, (double)g.calls / t, g.bytes, g.errors);
	return 0;
}
