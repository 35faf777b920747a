/* SPDX-License-Identifier: MIT */
/* cli.h: the subcommands main() dispatches to, and their shared replies. */
#ifndef CLI_H
#define CLI_H

int cli_serve(int argc, char **argv);
int cli_connect(int argc, char **argv);
int cli_bench(int argc, char **argv);

/*
 * The index of the first "--" in argv, or argc. Options are parsed only
 * before it (in any order with the other words); a program and its own
 * options come after it untouched.
 */
int cli_find_dashes(int argc, char **argv);

/* Print a usage text on stdout; returns EXIT_OK. */
int cli_help(const char *text);

/* "pbx: CMD: bad WHAT 'VALUE': EXPECTED"; returns EXIT_USAGE. */
int cli_bad_value(const char *what, const char *value, const char *expected);

#endif /* CLI_H */
