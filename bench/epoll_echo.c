/* SPDX-License-Identifier: MIT */
/*
 * epoll_echo.c: the machine's ceiling for echo (RFC 862). One process, one
 * epoll set, level-triggered. A readable connection gets one read of up to
 * 64 KiB (a short read means the socket is drained, so no second read just
 * to see EAGAIN) and the bytes go straight back; what the socket will not
 * take waits in the connection's buffer while it watches for EPOLLOUT
 * instead. EOF or an error closes the connection.
 *
 * usage: epoll_echo HOST PORT   (PORT 0: the kernel picks)
 * Says "listening on HOST:PORT" on stderr when ready; SIGTERM stops it.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF_SIZE 65536

struct conn {
	int fd;
	bool out;        /* watching EPOLLOUT (bytes wait), not EPOLLIN */
	size_t off, len; /* bytes buf[off..len) are still to be sent */
	char buf[BUF_SIZE];
};

static int
listen_on(const char *host, const char *port)
{
	struct sockaddr_in addr = {.sin_family = AF_INET};
	struct sockaddr *sa = (struct sockaddr *)&addr;
	socklen_t sl = sizeof addr;
	int one = 1;

	addr.sin_port = htons((uint16_t)strtoul(port, NULL, 10));
	if (inet_pton(AF_INET, host, &addr.sin_addr) != 1)
		return -1;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (bind(fd, sa, sizeof addr) < 0 || listen(fd, 4096) < 0 ||
	    getsockname(fd, sa, &sl) < 0)
		return -1;
	fprintf(stderr, "listening on %s:%u\n", host, ntohs(addr.sin_port));
	return fd;
}

static void
accept_all(int ep, int lfd)
{
	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return;
		struct conn *c = malloc(sizeof *c);
		struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
		if (c == NULL || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
			free(c);
			close(fd);
			continue;
		}
		*c = (struct conn){.fd = fd};
	}
}

/* Send what is pending; 1: all gone, 0: the socket is full, -1: error. */
static int
flush(struct conn *c)
{
	while (c->off < c->len) {
		ssize_t n = write(c->fd, c->buf + c->off, c->len - c->off);
		if (n < 0)
			return errno == EAGAIN ? 0 : -1;
		c->off += (size_t)n;
	}
	c->off = c->len = 0;
	return 1;
}

static void
serve(int ep, struct conn *c)
{
	int r = flush(c);
	if (r > 0) {
		ssize_t n = read(c->fd, c->buf, BUF_SIZE);
		if (n > 0) {
			c->len = (size_t)n;
			r = flush(c);
		} else if (n == 0 || errno != EAGAIN) {
			r = -1;
		}
	}
	if (r < 0) {
		close(c->fd);
		free(c);
		return;
	}
	/* Watch for room while bytes wait, for input once none do. */
	bool out = r == 0;
	if (out != c->out) {
		struct epoll_event ev = {
		    .events = out ? EPOLLOUT : EPOLLIN, .data.ptr = c};
		c->out = out;
		epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
	}
}

int
main(int argc, char **argv)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL}, out[64];

	if (argc != 3) {
		fprintf(stderr, "usage: epoll_echo HOST PORT\n");
		return 2;
	}
	int lfd = listen_on(argv[1], argv[2]);
	int ep = epoll_create1(EPOLL_CLOEXEC);
	if (lfd < 0 || ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev) < 0) {
		perror("epoll_echo: listen");
		return 1;
	}
	for (;;) {
		int n = epoll_wait(ep, out, 64, -1);
		for (int i = 0; i < n; i++) {
			if (out[i].data.ptr == NULL)
				accept_all(ep, lfd);
			else
				serve(ep, out[i].data.ptr);
		}
	}
}
