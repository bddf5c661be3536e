/* A fresh temporary directory per test, removed with everything in it afterwards (shared test helper). */
#ifndef CV_TESTS_TMPDIR_H
#define CV_TESTS_TMPDIR_H

/* Header-only, like lsan_check.h: each suite includes it once. Nothing here asserts; the caller decides
 * what a failure means (a fixture asserts on mkdtemp, a teardown does not care). */
#include <ftw.h>
#include <stdio.h>
#include <sys/stat.h>

static inline int cv_tmpdir__rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Removes dir and all below it, without following symlinks; 0 or -1 (errno set). */
static inline int cv_tmpdir_remove(const char *dir)
{
    return nftw(dir, cv_tmpdir__rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

#endif
