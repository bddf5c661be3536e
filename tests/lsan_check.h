/* Per-test LeakSanitizer check for criterion suites, and a main() that makes failures in .fini count. */
#ifndef CV_TESTS_LSAN_CHECK_H
#define CV_TESTS_LSAN_CHECK_H

/* Usage: include once per test binary (it defines main) and give every suite `.fini = cv_lsan_check`, or
 * call cv_lsan_check() last in the suite's own fini.
 *
 * Why: criterion 2.4 runs each test in a worker process that ends without LeakSanitizer's exit-time
 * check, so a leaking test passes. The worker belongs to that one test, so once its fini has run,
 * everything the test allocated must be gone: __lsan_do_recoverable_leak_check() says whether it is.
 *
 * Criterion decides pass/fail before .fini runs: an assertion that fails in a fini is printed but the
 * test still passes and the binary exits 0 (by design, Snaipe/Criterion#211, #242). So the runner side
 * below turns "an assertion failed after the test body returned" into a failed test: a POST_FINI report
 * hook marks it, a POST_ALL hook corrects the synthesis line, and main() exits non-zero. This holds for
 * any assertion in a fini, in every build; the leak check itself only exists under ASan (GCC defines
 * __SANITIZE_ADDRESS__, clang has __has_feature). With ASAN_OPTIONS=detect_leaks=0 it finds nothing. */
#include <criterion/criterion.h>
#include <criterion/hooks.h>
#include <criterion/logging.h>
#include <criterion/options.h>
#include <stddef.h>

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

/* Runner process only: tests that passed their body but failed an assertion in a fini. */
static size_t cv_lsan__fini_failures;

ReportHook(POST_FINI)(struct criterion_test_stats *ts)
{
    if (ts->test_status != CR_STATUS_PASSED || ts->failed_asserts == 0) return;
    ts->test_status = CR_STATUS_FAILED;
    cv_lsan__fini_failures++;
    cr_log_error("%s::%s: FAILED in .fini (see the assertion above)", ts->test->category, ts->test->name);
}

ReportHook(POST_ALL)(struct criterion_global_stats *gs)
{
    gs->tests_failed += cv_lsan__fini_failures;
    gs->tests_passed -= cv_lsan__fini_failures;
}

/* Criterion's own main, plus the failures it does not count. */
int main(int argc, char *argv[])
{
    struct criterion_test_set *tests = criterion_initialize();
    int result = 0;

    if (criterion_handle_args(argc, argv, true))
        result = !criterion_run_all_tests(tests);
    if (cv_lsan__fini_failures && !criterion_options.always_succeed) result = 1;
    criterion_finalize(tests);
    return result;
}

#endif
