/* cfg.h: the INI configuration (inih), with environment and flags layered on top. */
#ifndef SNAP_CFG_H
#define SNAP_CFG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "errors.h"

typedef struct cfg cfg;

/* ---- the declared keys (cfg_keys.c) ---------------------------------------------- */

typedef enum cfg_type {
    CFG_STRING,   /* any text */
    CFG_BOOL,     /* true/false, yes/no, on/off, 1/0, any case (cfg_parse_bool) */
    CFG_INT,      /* a whole number from min to max */
    CFG_SIZE,     /* 4096, 64K, 64M, 1G, 1T (KiB, MB ... too), from min to max (max 0: no bound) */
    CFG_DURATION, /* 90s, 15m, 12h, 7d, 2w; from min to max seconds (max 0: no bound) */
    CFG_LIST,     /* words separated by white space (never commas); the key may repeat */
    CFG_ENUM,     /* one of the space-separated `values` */
} cfg_type;

typedef struct cfg_key {
    const char *section; /* "store", "snap", "revert" or "source *" ([source NAME]) */
    const char *types;   /* source types the key applies to ("files images"), NULL: every */
    const char *name;
    cfg_type type;
    long long min, max;
    const char *values; /* CFG_ENUM */
    const char *def;    /* the default, as documentation */
    bool secret;        /* never shown (config show prints <redacted>) */
    const char *env;    /* an environment variable that overrides the file, or NULL */
    const char *doc;
} cfg_key;

const cfg_key *cfg_keys(size_t *n);
const char *cfg_type_name(cfg_type t);
/* The declaration of section.key ("source web" matches "source *"), or NULL. */
const cfg_key *cfg_key_find(const char *section, const char *key);
/* Checks one value against its key; a usage error naming the key, the value and the form. */
snap_rc cfg_check_value(const cfg_key *k, const char *value, snap_err *err);

cfg *cfg_new(void);
void cfg_free(cfg *c);

/*
 * Loads an INI file and checks it against the declared keys: an unknown section or key,
 * or a value that does not parse, is SNAP_EUSAGE naming file:line and the key, with a
 * "did you mean" hint for a near miss. Booleans are stored as "true" or "false". Keys the
 * file sets replace the values earlier files gave them (layering); a key repeated within
 * one file keeps every value in order.
 */
snap_rc cfg_load_file(cfg *c, const char *path, snap_err *err);

#define CFG_DEFAULT_PATH "/etc/snap/snap.conf"

/*
 * The config files in force: explicit (--config), else $SNAP_CONFIG, else
 * /etc/snap/snap.conf with $XDG_CONFIG_HOME/snap/snap.conf (else ~/.config/snap/snap.conf)
 * layered over it; never one in the current directory. None existing is fine (the
 * defaults apply); an explicit file that does not exist is an error, and /dev/null means
 * no file. A file that another user owns or could write, or that sits in such a
 * directory, is refused (SNAP_EUSAGE).
 */
snap_rc cfg_find_and_load(cfg *c, const char *explicit_path, snap_err *err);

/* The files loaded, in order. */
size_t cfg_file_count(const cfg *c);
const char *cfg_file_name(const cfg *c, size_t i);

/*
 * Precedence is flag, then environment, then file, then default: this sets every key that
 * declares an environment variable which is set and not empty (checked as a file value
 * would be, the error naming the variable). Flags are applied after it with cfg_set_from.
 */
snap_rc cfg_apply_env(cfg *c, snap_err *err);

/* Where the value of section.key came from: "default", "FILE:LINE", "environment $X",
 * "flag --x", or "program" (set by the code itself). */
const char *cfg_origin(const cfg *c, const char *section, const char *key);

/* The last value of section.key, or NULL. Section "source app" is written as such. Reading
 * or setting a key that is not declared in cfg_keys.c is a programming error: abort(). */
const char *cfg_get(const cfg *c, const char *section, const char *key);

/* Replaces every value of section.key by one (flags and environment override the file). */
void cfg_set(cfg *c, const char *section, const char *key, const char *value);

/* As cfg_set, recording where the value came from ("flag --zstd-level"). */
void cfg_set_from(cfg *c, const char *section, const char *key, const char *value, const char *origin);

/* Appends one more value (repeatable keys such as `path`). */
void cfg_add(cfg *c, const char *section, const char *key, const char *value);

/* Calls fn for every value of section.key in file order; stops early when fn returns false. */
void cfg_each(const cfg *c, const char *section, const char *key,
              bool (*fn)(const char *value, void *arg), void *arg);

/* Adds every value of src's section `from` to dst's section `to`, in order, but for the
 * keys named in except (NULL-terminated, or NULL): how a derived configuration (the
 * safety snapshot's) keeps every setting the user gave. */
void cfg_copy_section(cfg *dst, const cfg *src, const char *from, const char *to, const char *const *except);

/* The names of "[source NAME]" sections, in file order; returns how many. */
size_t cfg_source_count(const cfg *c);
const char *cfg_source_name(const cfg *c, size_t i);

/*
 * Typed reads of the declared keys. The type, the range and the default come from the
 * table (cfg_keys.c), never from the caller; section "source NAME" finds the keys of
 * "source *". A default the table writes as a value of the key's type ("16M", "7d",
 * "true", an enum's word) is what an unset key gives; a default the table only describes
 * (derived at run time: "true with endpoint", "$PATH", "the server's") leaves *out as the
 * caller set it. A value that does not parse or is out of range (a flag's, or one set by
 * the program) is SNAP_EUSAGE naming where it came from, the section and the key:
 * "config file FILE:LINE: [source db]: chunk_size = 12: expected a size of at least 4096
 * bytes". Reading a key as another type than its declared one is a programming error.
 */
snap_rc cfg_int(const cfg *c, const char *section, const char *key, long *out, snap_err *err);
snap_rc cfg_size(const cfg *c, const char *section, const char *key, uint64_t *out, snap_err *err);
snap_rc cfg_bool(const cfg *c, const char *section, const char *key, bool *out, snap_err *err);
snap_rc cfg_duration(const cfg *c, const char *section, const char *key, int64_t *out, snap_err *err);
/* A string or enum: the value, else the table's default when it is a value (an enum's
 * word), else NULL. Owned by c. */
snap_rc cfg_str(const cfg *c, const char *section, const char *key, const char **out, snap_err *err);
/* Every item of a list key (each value split on white space) or of a repeatable string key
 * (each value whole), in file order, appended to out (a util_strv). */
struct util_strv;
void cfg_list(const cfg *c, const char *section, const char *key, struct util_strv *out);

/* One boolean syntax everywhere: true/false, yes/no, on/off, 1/0, in any case. */
bool cfg_parse_bool(const char *s, bool *out);

/* Every effective setting (one per key and section, repeatable keys as arrays) with its
 * origin, secrets as "<redacted>": {"[store] url": {"value": ..., "origin": ...}}. */
void cfg_show(const cfg *c, bool json, FILE *f);
/* The declared keys, one per line: "section<TAB>types<TAB>name<TAB>type<TAB>default". */
void cfg_print_keys(FILE *f);

/* Parsers shared with the command line. */
bool cfg_parse_size(const char *s, uint64_t *out);
/* 90s, 15m, 12h, 7d, 2w; false beyond CFG_DURATION_MAX (a thousand years) */
#define CFG_DURATION_MAX ((int64_t)1000 * 366 * 86400)
bool cfg_parse_duration(const char *s, int64_t *seconds);

#endif
