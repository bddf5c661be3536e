/* Per-test LeakSanitizer check for criterion suites: fails the test if it leaked (no-op without ASan). */
#ifndef CV_TESTS_LSAN_CHECK_H
#define CV_TESTS_LSAN_CHECK_H

#include <criterion/criterion.h>

/* Criterion's worker processes end without running LeakSanitizer's exit-time check, so a leaking test
 * would pass. Each suite therefore checks for itself once a test is done: `.fini = cv_lsan_check`, or a
 * call at the end of its own fini. The worker process belongs to that one test, so everything the test
 * allocated must be gone by then. GCC says ASan through __SANITIZE_ADDRESS__, clang through
 * __has_feature. With ASAN_OPTIONS=detect_leaks=0 the check finds nothing and passes. */
#if defined(__SANITIZE_ADDRESS__)
#define CV_LSAN_CHECK 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CV_LSAN_CHECK 1
#endif
#endif
#ifdef CV_LSAN_CHECK
#include <sanitizer/lsan_interface.h>
#endif

static inline void cv_lsan_check(void)
{
#ifdef CV_LSAN_CHECK
    cr_assert_eq(__lsan_do_recoverable_leak_check(), 0, "LeakSanitizer found leaks (report on stderr)");
#endif
}

#endif
