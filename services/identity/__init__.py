"""Identity: cities, schools (tenants), users and roles, students' 學籍 identity, login and tokens."""
