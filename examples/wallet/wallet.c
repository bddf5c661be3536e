/* Wallet: a balance that never goes below zero. */
#include <cverse/object.h>
#include "wallet.pb-c.h"

static void answer(Wallet__BalanceReply_Closure done, void *call, int64_t balance)
{
    Wallet__BalanceReply reply = WALLET__BALANCE_REPLY__INIT;
    reply.balance = balance;
    done(&reply, call);             /* packed right away: reply may live on the stack */
}

static void wallet_deposit(Wallet__Wallet_Service *svc, const Wallet__DepositRequest *in,
                           Wallet__BalanceReply_Closure done, void *call)
{
    Wallet__WalletState *w = cv_call_state(call);
    if (in->amount <= 0) {
        cv_call_fail(call, CV_EINVAL, "amount must be positive");
        return;
    }
    w->balance += in->amount;
    answer(done, call, w->balance);
}

static void wallet_withdraw(Wallet__Wallet_Service *svc, const Wallet__WithdrawRequest *in,
                            Wallet__BalanceReply_Closure done, void *call)
{
    Wallet__WalletState *w = cv_call_state(call);
    if (in->amount <= 0) {
        cv_call_fail(call, CV_EINVAL, "amount must be positive");
        return;
    }
    if (in->amount > w->balance) {  /* a business error: its own code, HTTP 422 (section 4) */
        Wallet__Overdraft o = WALLET__OVERDRAFT__INIT;
        o.balance = w->balance;
        o.requested = in->amount;
        cv_call_fail_app_details(call, "INSUFFICIENT_FUNDS", &o.base, "balance %lld, withdraw %lld",
                                 (long long)w->balance, (long long)in->amount);
        return;
    }
    w->balance -= in->amount;
    answer(done, call, w->balance);
}

static void wallet_balance(Wallet__Wallet_Service *svc, const Wallet__BalanceRequest *in,
                           Wallet__BalanceReply_Closure done, void *call)
{
    answer(done, call, ((Wallet__WalletState *)cv_call_state(call))->balance);
}

static const struct cv_object_type wallet_type = {
    .name = "Wallet",
    .service = CV_SERVICE(Wallet__Wallet_Service, WALLET__WALLET__INIT(wallet_)),
    .writes = CV_WRITES("Deposit", "Withdraw"),
    .state_message = &wallet__wallet_state__descriptor,
    .persist = CV_PERSIST_ON_WRITE,
};

/* The module entry point (section 5), or any function you hand to cv_node_main. */
__attribute__((visibility("default"))) int cverse_module_init(cv_registry *reg)
{
    return cv_register_type(reg, &wallet_type);
}
