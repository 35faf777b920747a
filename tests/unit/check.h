/* SPDX-License-Identifier: MIT */
/*
 * check.h: the unit-test harness. Each test runs in its own process with a
 * watchdog; a test fails on a failed CHECK, a crash, a timeout, or when it
 * leaves an fd open or a child unreaped. Output: one "PASS name" or
 * "FAIL name: why" line per test, read by tests/run.py.
 *
 *   static void test_addr_format_v4(void) { CHECK_EQ(1, 1); }
 *   CHECK_MAIN(TEST(test_addr_format_v4), ...)
 */
#ifndef CHECK_H
#define CHECK_H

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHECK_TIMEOUT_S 20

static int check_failures;

#define CHECK_FAILED(...)                                                      \
	do {                                                                   \
		fprintf(stderr, "  %s:%d: ", __FILE__, __LINE__);              \
		fprintf(stderr, __VA_ARGS__);                                  \
		fputc('\n', stderr);                                           \
		check_failures++;                                              \
	} while (0)

#define CHECK(cond)                                                            \
	do {                                                                   \
		if (!(cond))                                                   \
			CHECK_FAILED("CHECK(%s) failed", #cond);               \
	} while (0)

#define CHECK_EQ(a, b)                                                         \
	do {                                                                   \
		intmax_t check_a_ = (intmax_t)(a), check_b_ = (intmax_t)(b);   \
		if (check_a_ != check_b_)                                      \
			CHECK_FAILED("CHECK_EQ(%s, %s): %jd != %jd", #a, #b,   \
			    check_a_, check_b_);                               \
	} while (0)

#define CHECK_STR(a, b)                                                        \
	do {                                                                   \
		const char *check_a_ = (a), *check_b_ = (b);                   \
		if (check_a_ == NULL || check_b_ == NULL ||                    \
		    strcmp(check_a_, check_b_) != 0)                           \
			CHECK_FAILED("CHECK_STR(%s, %s): \"%s\" != \"%s\"",    \
			    #a, #b, check_a_ ? check_a_ : "(null)",            \
			    check_b_ ? check_b_ : "(null)");                   \
	} while (0)

/* Stop the test here if cond is false (later steps would only crash). */
#define REQUIRE(cond)                                                          \
	do {                                                                   \
		if (!(cond)) {                                                 \
			CHECK_FAILED("REQUIRE(%s) failed", #cond);             \
			return;                                                \
		}                                                              \
	} while (0)

struct check_test {
	const char *name;
	void (*fn)(void);
};
#define TEST(f)                                                                \
	{                                                                      \
		.name = #f, .fn = f                                            \
	}

static int
check_count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;
	if (d == NULL)
		return -1;
	while (readdir(d) != NULL)
		n++;
	closedir(d);
	return n;
}

/* Runs in the test's own process: the test, then the leak checks. */
static int
check_run_child(const struct check_test *t)
{
	int before = check_count_fds();
	t->fn();
	int after = check_count_fds();
	if (after != before)
		CHECK_FAILED("%s left %d fd(s) open", t->name, after - before);
	int status;
	if (waitpid(-1, &status, WNOHANG) >= 0 || errno != ECHILD)
		CHECK_FAILED("%s left a child process unreaped", t->name);
	return check_failures == 0 ? 0 : 1;
}

static int
check_run_one(const struct check_test *t)
{
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) {
		printf("FAIL %s: fork: %s\n", t->name, strerror(errno));
		return 1;
	}
	if (pid == 0) {
		alarm(CHECK_TIMEOUT_S);
		exit(check_run_child(t));
	}
	int status;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
		printf("PASS %s\n", t->name);
		return 0;
	}
	if (WIFSIGNALED(status))
		printf("FAIL %s: killed by signal %d%s\n", t->name,
		    WTERMSIG(status),
		    WTERMSIG(status) == SIGALRM ? " (timeout)" : "");
	else
		printf(
		    "FAIL %s: exit status %d\n", t->name, WEXITSTATUS(status));
	return 1;
}

/* Run every test, or only those named on the command line. */
static int
check_main(const struct check_test *tests, size_t n, int argc, char **argv)
{
	int failed = 0;
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);
	for (size_t i = 0; i < n; i++) {
		bool wanted = argc < 2;
		for (int a = 1; a < argc; a++)
			wanted |= strcmp(argv[a], tests[i].name) == 0;
		if (wanted)
			failed += check_run_one(&tests[i]);
	}
	return failed == 0 ? 0 : 1;
}

#define CHECK_MAIN(...)                                                        \
	int main(int argc, char **argv)                                        \
	{                                                                      \
		static const struct check_test tests[] = {__VA_ARGS__};        \
		return check_main(                                             \
		    tests, sizeof tests / sizeof tests[0], argc, argv);        \
	}

#endif /* CHECK_H */
