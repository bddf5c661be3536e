/* The Wallet example type: Deposit, Withdraw and Balance on a balance that never goes below zero; an
 * overdraft is refused. The balance is durable (persist: on_write): an answered Deposit or Withdraw
 * survives any crash. Built as a module (meson.build) and loaded with `cverse-node --module wallet.so`. */
#include <cverse/error.h>
#include <cverse/object.h>
#include <stdio.h>

#include "wallet.pb-c.h"

static void reply_balance(cv_reply *r, int64_t balance)
{
    Wallet__BalanceReply out = WALLET__BALANCE_REPLY__INIT;
    out.balance = balance;
    cv_reply_ok(r, &out.base);
}

static void deposit(cv_object *o, const ProtobufCMessage *req, cv_reply *r)
{
    const Wallet__DepositRequest *in = (const Wallet__DepositRequest *)req;
    Wallet__WalletState *w = cv_object_state(o);
    if (in->amount <= 0) {
        cv_reply_error(r, CV_EINVAL, "amount must be positive");
        return;
    }
    w->balance += in->amount;
    reply_balance(r, w->balance);
}

static void withdraw(cv_object *o, const ProtobufCMessage *req, cv_reply *r)
{
    const Wallet__WithdrawRequest *in = (const Wallet__WithdrawRequest *)req;
    Wallet__WalletState *w = cv_object_state(o);
    char msg[96];
    if (in->amount <= 0) {
        cv_reply_error(r, CV_EINVAL, "amount must be positive");
        return;
    }
    if (in->amount > w->balance) {
        snprintf(msg, sizeof msg, "balance %lld, withdraw %lld", (long long)w->balance, (long long)in->amount);
        cv_reply_error(r, CV_ECONFLICT, msg);
        return;
    }
    w->balance -= in->amount;
    reply_balance(r, w->balance);
}

static void balance(cv_object *o, const ProtobufCMessage *req, cv_reply *r)
{
    (void)req;
    reply_balance(r, ((Wallet__WalletState *)cv_object_state(o))->balance);
}

static const struct cv_method wallet_methods[] = {
    {"Deposit", &wallet__deposit_request__descriptor, &wallet__balance_reply__descriptor, deposit, CV_METHOD_WRITES},
    {"Withdraw", &wallet__withdraw_request__descriptor, &wallet__balance_reply__descriptor, withdraw, CV_METHOD_WRITES},
    {"Balance", &wallet__balance_request__descriptor, &wallet__balance_reply__descriptor, balance, 0},
};

static const struct cv_object_type wallet_type = {
    .name = "Wallet",
    .methods = wallet_methods,
    .n_methods = sizeof wallet_methods / sizeof wallet_methods[0],
    .state_message = &wallet__wallet_state__descriptor,
    .persist = CV_PERSIST_ON_WRITE,
};

__attribute__((visibility("default"))) int cverse_module_init(cv_registry *reg);

int cverse_module_init(cv_registry *reg)
{
    return cv_register_type(reg, &wallet_type);
}
