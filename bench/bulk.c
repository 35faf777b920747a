/* SPDX-License-Identifier: MIT */
/*
 * bulk.c: the fixed ends of the bulk workload, the same for every client
 * measured, and two minimal clients to measure pbx connect against.
 *
 *   bulk feed BYTES            write BYTES zero bytes to stdout (1 MiB
 *                              writes from one zeroed buffer), then exit
 *   bulk count                 read stdin to EOF (splice(2) into /dev/null
 *                              when stdin is a pipe) and print the number
 *                              of bytes on stdout
 *   bulk send HOST PORT BYTES  a server: every caller, one at a time, gets
 *                              BYTES zero bytes, then the close; says
 *                              "listening on HOST:PORT" on stderr when
 *                              ready (PORT 0: the kernel picks), "served
 *                              N connections" at SIGTERM
 *   bulk client HOST PORT      the splice client: connect, stdin to the
 *                              socket, shutdown(SHUT_WR), the socket to
 *                              stdout until EOF. One splice(2) a chunk,
 *                              straight between the pipe and the socket
 *                              (read/write when neither end is a pipe).
 *                              One direction after the other: enough for
 *                              a one-way transfer, not a general relay.
 *   bulk copy HOST PORT BUF    the same with read/write through a buffer
 *                              of BUF bytes (at most 1 MiB), no splice
 *
 * Blocking I/O throughout; exit status 0 when every byte moved.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define CHUNK (1 << 20)

static char zeros[CHUNK];
static char buf[CHUNK];
static size_t bufsize = CHUNK;
static volatile sig_atomic_t stop;

static void
on_stop(int sig)
{
	(void)sig;
	stop = 1;
}

static void
ignore_sigpipe(void)
{
	struct sigaction sa = {.sa_handler = SIG_IGN};
	sigaction(SIGPIPE, &sa, NULL);
}

static int
parse_addr(const char *host, const char *port, struct sockaddr_in *addr)
{
	memset(addr, 0, sizeof *addr);
	addr->sin_family = AF_INET;
	addr->sin_port = htons((uint16_t)strtoul(port, NULL, 10));
	return inet_pton(AF_INET, host, &addr->sin_addr) == 1 ? 0 : -1;
}

/* Write all of p[0..len): 0, or -1 on an error. */
static int
write_all(int fd, const char *p, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR && !stop)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Move from to to until EOF; the byte count, or -1 on an error. */
static long long
move(int from, int to, int use_splice)
{
	long long total = 0;
	int spliced = 0;

	while (use_splice) {
		ssize_t n = splice(from, NULL, to, NULL, CHUNK, SPLICE_F_MOVE);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EINVAL && !spliced)
			break; /* neither end is a pipe: copy */
		if (n < 0)
			return -1;
		if (n == 0)
			return total;
		spliced = 1;
		total += n;
	}
	for (;;) {
		ssize_t n = read(from, buf, bufsize);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0)
			return total;
		if (write_all(to, buf, (size_t)n) < 0)
			return -1;
		total += n;
	}
}

static int
feed(long long bytes)
{
	while (bytes > 0) {
		size_t len = bytes < CHUNK ? (size_t)bytes : CHUNK;
		if (write_all(1, zeros, len) < 0) {
			perror("bulk feed: write");
			return 1;
		}
		bytes -= (long long)len;
	}
	return 0;
}

static int
count(void)
{
	int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
	long long n = null < 0 ? -1 : move(0, null, 1);
	if (n < 0) {
		perror("bulk count");
		return 1;
	}
	printf("%lld\n", n);
	return 0;
}

static int
send_server(const char *host, const char *port, long long bytes)
{
	struct sigaction sa = {.sa_handler = on_stop}; /* no SA_RESTART */
	struct sockaddr_in addr;
	socklen_t sl = sizeof addr;
	unsigned long served = 0;
	int one = 1;

	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	ignore_sigpipe();
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (parse_addr(host, port, &addr) < 0 || lfd < 0 ||
	    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
	    bind(lfd, (struct sockaddr *)&addr, sizeof addr) < 0 ||
	    listen(lfd, 64) < 0 ||
	    getsockname(lfd, (struct sockaddr *)&addr, &sl) < 0) {
		perror("bulk send: listen");
		return 1;
	}
	fprintf(stderr, "listening on %s:%u\n", host, ntohs(addr.sin_port));
	while (!stop) {
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			continue; /* EINTR (stop), or a caller who left */
		served++;
		long long left = bytes;
		while (left > 0 && !stop) {
			size_t len = left < CHUNK ? (size_t)left : CHUNK;
			if (write_all(fd, zeros, len) < 0)
				break;
			left -= (long long)len;
		}
		if (left > 0)
			fprintf(stderr, "bulk send: %lld bytes not sent: %s\n",
			    left, strerror(errno));
		else
			fprintf(stderr, "sent %lld bytes\n", bytes);
		close(fd);
	}
	fprintf(stderr, "served %lu connection%s\n", served,
	    served == 1 ? "" : "s");
	return 0;
}

static int
client(const char *host, const char *port, int use_splice)
{
	struct sockaddr_in addr;

	ignore_sigpipe();
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (parse_addr(host, port, &addr) < 0 || fd < 0 ||
	    connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
		perror("bulk client: connect");
		return 1;
	}
	if (move(0, fd, use_splice) < 0 || shutdown(fd, SHUT_WR) < 0) {
		perror("bulk client: to the socket");
		return 1;
	}
	if (move(fd, 1, use_splice) < 0) {
		perror("bulk client: from the socket");
		return 1;
	}
	return 0;
}

int
main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "feed") == 0)
		return feed(atoll(argv[2]));
	if (argc == 2 && strcmp(argv[1], "count") == 0)
		return count();
	if (argc == 5 && strcmp(argv[1], "send") == 0)
		return send_server(argv[2], argv[3], atoll(argv[4]));
	if (argc == 4 && strcmp(argv[1], "client") == 0)
		return client(argv[2], argv[3], 1);
	if (argc == 5 && strcmp(argv[1], "copy") == 0) {
		bufsize = strtoul(argv[4], NULL, 10);
		if (bufsize == 0 || bufsize > CHUNK) {
			fprintf(stderr, "bulk copy: BUF from 1 to %d\n", CHUNK);
			return 2;
		}
		return client(argv[2], argv[3], 0);
	}
	fprintf(stderr, "usage: bulk feed BYTES | bulk count | "
			"bulk send HOST PORT BYTES | bulk client HOST PORT | "
			"bulk copy HOST PORT BUF\n");
	return 2;
}
