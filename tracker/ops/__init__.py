"""Operations: the query routes, their SQL, and the OpenAPI document."""
