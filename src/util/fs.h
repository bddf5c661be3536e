/* File-system helpers shared by the modules that keep data on disk (catalog, consensus). */
#ifndef CV_UTIL_FS_H
#define CV_UTIL_FS_H

/* Creates dir and its missing parents (mode 0755), like `mkdir -p`. 0; CV_EINVAL for a path longer than
 * PATH_MAX; CV_EIO (logged with the failing component and errno) otherwise. */
int cv_mkdir_p(const char *dir);

/* Text of errno err for a failed write under path: strerror(err), except that EIO on a file system with
 * less than CV_FS_FULL_BYTES left (for this user) reads "No space left on device" — LMDB reports the short
 * write that a full disk causes as EIO. Returns a static string. */
#define CV_FS_FULL_BYTES (1024u * 1024u)
const char *cv_fs_strerror(int err, const char *path);

#endif
