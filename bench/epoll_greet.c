/* SPDX-License-Identifier: MIT */
/*
 * epoll_greet.c: the machine's ceiling for the built-in greeting. One
 * process, one epoll set that holds only the listener; on readiness it
 * accepts until EAGAIN and, for every caller, formats the address, writes
 * "Hello, person from IP:PORT\n" once (it always fits a fresh socket's
 * send buffer) and closes. The same work as `pbx serve --model event`,
 * with nothing else.
 *
 * usage: epoll_greet HOST PORT   (PORT 0: the kernel picks)
 * Says "listening on HOST:PORT" on stderr when ready and "served N
 * connections" when SIGTERM or SIGINT stops it.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void
on_stop(int signo)
{
	(void)signo;
	stop = 1;
}

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

/* Accept every waiting caller and greet each; returns how many. */
static unsigned long
greet_all(int lfd)
{
	unsigned long n = 0;

	for (;;) {
		struct sockaddr_in sa;
		socklen_t sl = sizeof sa;
		char ip[INET_ADDRSTRLEN], line[80];

		int fd =
		    accept4(lfd, (struct sockaddr *)&sa, &sl, SOCK_CLOEXEC);
		if (fd < 0)
			return n; /* EAGAIN, or a caller who already left */
		n++;
		inet_ntop(AF_INET, &sa.sin_addr, ip, sizeof ip);
		int len = snprintf(line, sizeof line,
		    "Hello, person from %s:%u\n", ip, ntohs(sa.sin_port));
		if (write(fd, line, (size_t)len) < 0)
			perror("epoll_greet: write");
		close(fd);
	}
}

int
main(int argc, char **argv)
{
	struct sigaction sa = {.sa_handler = on_stop};
	struct epoll_event ev = {.events = EPOLLIN}, out[8];
	sigset_t block, orig;
	unsigned long served = 0;

	if (argc != 3) {
		fprintf(stderr, "usage: epoll_greet HOST PORT\n");
		return 2;
	}
	/* SIGTERM is only let in inside epoll_pwait: no lost wake-up. */
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigprocmask(SIG_BLOCK, &block, &orig);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	int lfd = listen_on(argv[1], argv[2]);
	int ep = epoll_create1(EPOLL_CLOEXEC);
	if (lfd < 0 || ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev) < 0) {
		perror("epoll_greet: listen");
		return 1;
	}
	while (!stop) {
		int n = epoll_pwait(ep, out, 8, -1, &orig);
		if (n < 0 && errno != EINTR) {
			perror("epoll_greet: epoll_wait");
			return 1;
		}
		if (n > 0)
			served += greet_all(lfd);
	}
	fprintf(stderr, "served %lu connections\n", served);
	return 0;
}
