/* libFuzzer target: the YAML config loader (cv_config_parse over libyaml).
 *
 * Any input either loads (and then frees cleanly) or is refused with exactly one message line that names
 * the file ("fuzz.yml:LINE: KEY: what is wrong"), which is what a user sees with exit 2. A refusal without
 * a message, a message without the file name, or an accepted config with no node are bugs. */
#include <stdint.h>
#include <string.h>

#include "config/config.h"
#include "cverse/error.h"

#define CHECK(c)                                                                                             \
    do {                                                                                                     \
        if (!(c)) __builtin_trap();                                                                          \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cv_config *cfg = NULL;
    char err[512] = "";
    int rv = cv_config_parse((const char *)data, size, "fuzz.yml", &cfg, err, sizeof err);
    if (rv == 0) {
        CHECK(cfg != NULL);
        CHECK(cfg->shards >= 1);
        cv_config_free(cfg);
    } else {
        CHECK(cfg == NULL);
        CHECK(rv == CV_ECONFIG || rv == CV_ENOMEM || rv == CV_EIO);
        CHECK(strncmp(err, "fuzz.yml", 8) == 0);
        CHECK(strchr(err, '\n') == NULL);
    }
    return 0;
}
