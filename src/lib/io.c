/* SPDX-License-Identifier: MIT */
/* io.c: reads and writes that survive EINTR, short writes and SIGPIPE. */
#include "internal.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

uint64_t
pbx__now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

ssize_t
pbx_read_some(int fd, void *buf, size_t len)
{
	for (;;) {
		ssize_t n = read(fd, buf, len);
		if (n >= 0)
			return n;
		if (errno != EINTR)
			return -errno;
	}
}

ssize_t
pbx_write_some(int fd, const void *buf, size_t len)
{
	for (;;) {
		/* MSG_NOSIGNAL: a vanished peer is an error, not a death. */
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
		if (n < 0 && errno == ENOTSOCK)
			n = write(fd, buf, len);
		if (n >= 0)
			return n;
		if (errno != EINTR)
			return -errno;
	}
}

#define NO_DEADLINE UINT64_MAX

/* Wait until fd is ready for events, or the deadline passes. */
static int
wait_fd(int fd, short events, uint64_t deadline)
{
	struct pollfd p = {.fd = fd, .events = events};

	for (;;) {
		int wait = -1;
		if (deadline != NO_DEADLINE) {
			uint64_t now = pbx__now_ms();
			wait = deadline > now ? (int)(deadline - now) : 0;
		}
		int n = poll(&p, 1, wait);
		if (n > 0)
			return 0;
		if (n == 0)
			return -ETIMEDOUT;
		if (errno != EINTR)
			return -errno;
	}
}

ssize_t
pbx_write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	size_t done = 0;

	while (done < len) {
		ssize_t n = pbx_write_some(fd, p + done, len - done);
		if (n == -EAGAIN) {
			int r = wait_fd(fd, POLLOUT, NO_DEADLINE);
			if (r < 0)
				return r;
			continue;
		}
		if (n < 0)
			return n;
		done += (size_t)n;
	}
	return (ssize_t)len;
}

ssize_t
pbx_read_all(int fd, void *buf, size_t len, int timeout_ms)
{
	uint64_t deadline = NO_DEADLINE;
	char *p = buf;
	size_t done = 0;

	if (timeout_ms >= 0)
		deadline = pbx__now_ms() + (uint64_t)timeout_ms;
	while (done < len) {
		int r = wait_fd(fd, POLLIN, deadline);
		if (r < 0)
			return r;
		ssize_t n = pbx_read_some(fd, p + done, len - done);
		if (n == -EAGAIN)
			continue;
		if (n < 0)
			return n;
		if (n == 0)
			break;
		done += (size_t)n;
	}
	return (ssize_t)done;
}

int
pbx_shutdown_write(int fd)
{
	return shutdown(fd, SHUT_WR) < 0 ? -errno : 0;
}
