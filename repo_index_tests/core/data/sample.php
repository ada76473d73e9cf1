<?php

namespace App\Models;

use InvalidArgumentException;

interface HasName
{
    public function name(): string;
}

class User implements HasName
{
    private array $roles = [];

    public function __construct(private string $email)
    {
        if (!filter_var($email, FILTER_VALIDATE_EMAIL)) {
            throw new InvalidArgumentException("bad email");
        }
    }

    public function name(): string
    {
        return strstr($this->email, '@', true);
    }

    public function grant(string $role): void
    {
        $this->roles[] = $role;
    }
}

function make_user(string $email): User
{
    return new User($email);
}
