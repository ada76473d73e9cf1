CREATE TABLE users (
  id INTEGER PRIMARY KEY,
  email TEXT NOT NULL UNIQUE
);

SELECT id, email
FROM users
WHERE email LIKE '%@example.com'
ORDER BY id;
