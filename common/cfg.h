/* cfg.h: the INI configuration (inih), with environment and flags layered on top. */
#ifndef SNAP_CFG_H
#define SNAP_CFG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "errors.h"

typedef struct cfg cfg;

cfg *cfg_new(void);
void cfg_free(cfg *c);

/* Loads an INI file; later values of the same key are kept in order (see cfg_get_all). */
snap_rc cfg_load_file(cfg *c, const char *path, snap_err *err);

#define CFG_DEFAULT_PATH "/etc/snap/snap.conf"

/*
 * The config file in force: explicit (from --config), else $SNAP_CONFIG, else
 * /etc/snap/snap.conf; never one in the current directory. None existing is fine (the
 * embedded defaults apply); an explicit file that does not exist is an error. A file
 * that another user owns or could write, or that sits in such a directory, is refused
 * (SNAP_EUSAGE).
 */
snap_rc cfg_find_and_load(cfg *c, const char *explicit_path, snap_err *err);

/* The last value of section.key, or NULL. Section "source app" is written as such. */
const char *cfg_get(const cfg *c, const char *section, const char *key);

/* Replaces every value of section.key by one (flags and environment override the file). */
void cfg_set(cfg *c, const char *section, const char *key, const char *value);

/* Appends one more value (repeatable keys such as `path`). */
void cfg_add(cfg *c, const char *section, const char *key, const char *value);

/* Calls fn for every value of section.key in file order; stops early when fn returns false. */
void cfg_each(const cfg *c, const char *section, const char *key,
              bool (*fn)(const char *value, void *arg), void *arg);

/* The names of "[source NAME]" sections, in file order; returns how many. */
size_t cfg_source_count(const cfg *c);
const char *cfg_source_name(const cfg *c, size_t i);

/* Typed getters; a value that does not parse is a usage error naming the key. */
snap_rc cfg_get_int(const cfg *c, const char *section, const char *key, long def, long min,
                    long max, long *out, snap_err *err);
snap_rc cfg_get_size(const cfg *c, const char *section, const char *key, uint64_t def,
                     uint64_t *out, snap_err *err); /* 64M, 1G, 4096 */
snap_rc cfg_get_bool(const cfg *c, const char *section, const char *key, bool def, bool *out,
                     snap_err *err);

/* Parsers shared with the command line. */
bool cfg_parse_size(const char *s, uint64_t *out);
/* 90s, 15m, 12h, 7d, 2w; false beyond CFG_DURATION_MAX (a thousand years) */
#define CFG_DURATION_MAX ((int64_t)1000 * 366 * 86400)
bool cfg_parse_duration(const char *s, int64_t *seconds);

#endif
