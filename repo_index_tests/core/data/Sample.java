package com.example.bank;

import java.util.ArrayList;
import java.util.List;

/** A bank account with a transaction log. */
public class Account {
    private final String owner;
    private long balance;
    private final List<String> log = new ArrayList<>();

    public Account(String owner) {
        this.owner = owner;
    }

    /** Adds money; amount must be positive. */
    public void deposit(long amount) {
        if (amount <= 0) {
            throw new IllegalArgumentException("amount must be positive");
        }
        balance += amount;
        log.add("deposit " + amount);
    }

    public boolean withdraw(long amount) {
        if (amount > balance) {
            return false;
        }
        balance -= amount;
        log.add("withdraw " + amount);
        return true;
    }

    public interface Listener {
        void onChange(Account account);
    }

    enum Kind { CHECKING, SAVINGS }
}
