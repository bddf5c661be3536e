/* File-system helpers shared by the modules that keep data on disk (catalog, consensus). */
#ifndef CV_UTIL_FS_H
#define CV_UTIL_FS_H

/* Creates dir and its missing parents (mode 0755), like `mkdir -p`. 0; CV_EINVAL for a path longer than
 * PATH_MAX; CV_EIO (logged with the failing component and errno) otherwise. */
int cv_mkdir_p(const char *dir);

#endif
