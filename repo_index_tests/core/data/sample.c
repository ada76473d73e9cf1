#include <stdio.h>
#include <stdlib.h>

/* A growable array of ints. */
struct vec {
    int *data;
    size_t len, cap;
};

typedef struct vec vec_t;

static int grow(struct vec *v) {
    size_t cap = v->cap ? v->cap * 2 : 8;
    int *data = realloc(v->data, cap * sizeof *data);
    if (!data)
        return -1;
    v->data = data;
    v->cap = cap;
    return 0;
}

int vec_push(struct vec *v, int x) {
    if (v->len == v->cap && grow(v) != 0)
        return -1;
    v->data[v->len++] = x;
    return 0;
}

int main(void) {
    struct vec v = {0};
    for (int i = 0; i < 100; i++)
        vec_push(&v, i);
    printf("%zu\n", v.len);
    free(v.data);
    return 0;
}
